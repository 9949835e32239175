#include "trainer/train/pipeline_plan.h"

#include <stdexcept>

namespace baleine::train {

PipelinePlan plan_pipeline(const config::RunConfig& c, int pipeline_rank) {
  parallel::ScheduleKind kind = parallel::ScheduleKind::k1F1B;
  if (c.parallel.pp > 1 && !parallel::parse_schedule_name(c.parallel.schedule, &kind)) {
    throw std::invalid_argument("unknown schedule '" + c.parallel.schedule +
                                "' (the config loader should have refused it)");
  }
  PipelinePlan plan;
  plan.schedule = parallel::make_schedule(kind, static_cast<int>(c.parallel.pp),
                                          static_cast<int>(c.grad_accum_steps()));
  plan.stages = parallel::assign_layers(c.model.layers, plan.schedule.stages,
                                        c.parallel.pp > 1 ? c.parallel.stage_layers
                                                          : std::vector<int64_t>{});
  for (const auto& ref : plan.schedule.stages_of_rank.at(static_cast<size_t>(pipeline_rank))) {
    plan.parts.push_back(plan.stages.at(static_cast<size_t>(ref.stage)));
    plan.part_directions.push_back(ref.direction);
  }
  return plan;
}

std::string describe_pipeline(const config::RunConfig& c, const PipelinePlan& plan) {
  const auto& s = plan.schedule;
  std::string text = "pipeline: " + c.parallel.schedule + " over " + std::to_string(s.ranks) +
                     " ranks, " + std::to_string(s.stages) + " stages" +
                     (s.directions > 1 ? " in each of 2 directions" : "") + ", " +
                     std::to_string(s.micro_batches) + " micro-batches per step\n";
  text += parallel::describe_assignment(plan.stages, c.model.layers);
  for (int r = 0; r < s.ranks; ++r) {
    text += "  pipeline rank " + std::to_string(r) + " runs";
    for (const auto& ref : s.stages_of_rank[static_cast<size_t>(r)]) {
      text += " " + parallel::describe(ref);
    }
    text += "\n";
  }
  return text;
}

}  // namespace baleine::train
