#pragma once
// Pictures of a simulated schedule, for `baleine schedule`: a text timeline for the terminal
// and an SVG file. One row per rank, time left to right; each compute op is a box labelled
// with its kind and micro-batch; gaps are the bubble.
#include <string>

#include "parallel/schedule.h"

namespace baleine::parallel {

// The published bubble of a schedule kind for these costs (DualPipe README table):
//   1F1B (PP−1)(F+B); ZB1P (PP−1)(F+B−2W); DualPipe and DualPipeV (PP/2−1)(F&B+B−3W), where
//   PP is the number of pipeline STAGES of one direction (DualPipeV: 2 × ranks).
// Also its formula as text, e.g. "(PP-1)(F+B) = 3 x 3 = 9".
double published_bubble(const Schedule& schedule, const Costs& costs, std::string* formula);

// Text timeline: `columns` characters wide. Each cell shows what the rank does during that
// slice of time: F forward, B full backward, I input-only backward, W weight backward,
// X overlapped F&B, '.' idle.
std::string text_timeline(const Schedule& schedule, const SimulationResult& result,
                          int columns = 100);

// A standalone SVG document of the same timeline, with a legend and the bubble per rank.
std::string svg_timeline(const Schedule& schedule, const SimulationResult& result,
                         const Costs& costs);

}  // namespace baleine::parallel
