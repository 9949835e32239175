#pragma once
// What a training run's pipeline looks like, from the config alone: the schedule (op lists of
// every pipeline rank for one step's micro-batches), the blocks of every stage, and the parts
// this rank holds. Without pipeline parallelism it is one rank and one stage, and the schedule
// is F, B per micro-batch: the trainer has a single code path.
#include <string>
#include <vector>

#include "parallel/schedule.h"
#include "parallel/stage_assignment.h"
#include "trainer/config/config.h"

namespace baleine::train {

struct PipelinePlan {
  parallel::Schedule schedule;
  std::vector<parallel::StageLayers> stages;  // every model stage (one direction)
  std::vector<parallel::StageLayers> parts;   // the stages held by this pipeline rank
  std::vector<int> part_directions;           // DualPipe: which direction runs each part
};

// pipeline_rank: this rank's index in its pipeline group (its stage in the topology).
PipelinePlan plan_pipeline(const config::RunConfig& config, int pipeline_rank);

// The lines printed at start: schedule, stage assignment, what each pipeline rank holds.
std::string describe_pipeline(const config::RunConfig& config, const PipelinePlan& plan);

}  // namespace baleine::train
