#include "parallel/schedule_render.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace baleine::parallel {

namespace {

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

// The letter and colour of a compute op.
struct Style {
  char letter;
  const char* color;
  const char* label;
};

Style style_of(const Op& op) {
  switch (op.kind) {
    case OpKind::kForward: return {'F', "#4e79a7", "F forward"};
    case OpKind::kBackward: return {'B', "#e15759", "B full backward"};
    case OpKind::kBackwardInput: return {'I', "#f28e2b", "BI backward for inputs"};
    case OpKind::kBackwardWeight: return {'W', "#59a14f", "W backward for weights"};
    case OpKind::kForwardBackward: return {'X', "#b07aa1", "F&B overlapped pair"};
    default: return {'?', "#bab0ac", "transfer"};
  }
}

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace

double published_bubble(const Schedule& s, const Costs& c, std::string* formula) {
  const int pp = s.kind == ScheduleKind::kDualPipeV ? 2 * s.ranks : s.ranks;
  double value = 0;
  std::string text;
  switch (s.kind) {
    case ScheduleKind::k1F1B:
      value = (pp - 1) * (c.F + c.B);
      text = "(PP-1)(F+B) = " + number(pp - 1) + " x " + number(c.F + c.B);
      break;
    case ScheduleKind::kZB1P:
      value = (pp - 1) * (c.F + c.B - 2 * c.W);
      text = "(PP-1)(F+B-2W) = " + number(pp - 1) + " x " + number(c.F + c.B - 2 * c.W);
      break;
    case ScheduleKind::kDualPipe:
    case ScheduleKind::kDualPipeV:
      value = (pp / 2.0 - 1) * (c.FB + c.B - 3 * c.W);
      text = "(PP/2-1)(F&B+B-3W) = " + number(pp / 2.0 - 1) + " x " + number(c.FB + c.B - 3 * c.W);
      break;
  }
  if (formula) *formula = text + " = " + number(value) + " (PP = " + std::to_string(pp) + ")";
  return value;
}

std::string text_timeline(const Schedule& s, const SimulationResult& r, int columns) {
  std::ostringstream out;
  const double scale = r.makespan > 0 ? columns / r.makespan : 0;
  for (int rank = 0; rank < s.ranks; ++rank) {
    std::string row(static_cast<size_t>(columns), '.');
    for (const auto& e : r.timeline[rank]) {
      const auto first = static_cast<int>(std::floor(e.start * scale + 1e-9));
      const auto last = static_cast<int>(std::ceil(e.end * scale - 1e-9));
      const char letter = style_of(s.ops[rank][e.op_index]).letter;
      for (int c = std::max(0, first); c < std::min(columns, last); ++c) row[c] = letter;
    }
    char head[32];
    std::snprintf(head, sizeof(head), "rank %2d |", rank);
    out << head << row << "| bubble " << number(r.bubble[rank]) << "\n";
  }
  out << "          F forward, B full backward, I backward for inputs, W backward for weights, "
         "X overlapped F&B, . idle\n";
  return out.str();
}

std::string svg_timeline(const Schedule& s, const SimulationResult& r, const Costs& costs) {
  const double unit = r.makespan > 0 ? 1000.0 / r.makespan : 1;  // 1000 px for the makespan
  const int row = 28, left = 70, top = 40;
  const int height = top + row * s.ranks + 70;
  std::ostringstream out;
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << left + 1000 + 160
      << "\" height=\"" << height << "\" font-family=\"monospace\" font-size=\"11\">\n";
  out << "<text x=\"" << left << "\" y=\"20\" font-size=\"14\">" << schedule_name(s.kind) << ": "
      << s.ranks << " ranks, " << s.micro_batches << " micro-batches; F=" << number(costs.F)
      << " B=" << number(costs.B) << " W=" << number(costs.W) << " F&amp;B=" << number(costs.FB)
      << "; makespan " << number(r.makespan) << "</text>\n";
  for (int rank = 0; rank < s.ranks; ++rank) {
    const int y = top + rank * row;
    out << "<text x=\"4\" y=\"" << y + 17 << "\">rank " << rank << "</text>\n";
    out << "<rect x=\"" << left << "\" y=\"" << y << "\" width=\"1000\" height=\"" << row - 4
        << "\" fill=\"#f4f4f4\"/>\n";
    for (const auto& e : r.timeline[rank]) {
      const Op& op = s.ops[rank][e.op_index];
      const Style st = style_of(op);
      const double x = left + e.start * unit, w = std::max(1.0, (e.end - e.start) * unit);
      out << "<rect x=\"" << x << "\" y=\"" << y << "\" width=\"" << w << "\" height=\""
          << row - 4 << "\" fill=\"" << st.color << "\" stroke=\"white\"><title>"
          << xml_escape(describe(op)) << " [" << number(e.start) << ", " << number(e.end) << ")</title></rect>\n";
      if (w > 18) {
        out << "<text x=\"" << x + 3 << "\" y=\"" << y + 16 << "\" fill=\"white\">" << st.letter
            << op.micro_batch << "</text>\n";
      }
    }
    out << "<text x=\"" << left + 1006 << "\" y=\"" << y + 17 << "\">bubble "
        << number(r.bubble[rank]) << "</text>\n";
  }
  int x = left;
  const int legend_y = top + s.ranks * row + 20;
  for (const OpKind kind : {OpKind::kForward, OpKind::kBackward, OpKind::kBackwardInput,
                            OpKind::kBackwardWeight, OpKind::kForwardBackward}) {
    Op op;
    op.kind = kind;
    const Style st = style_of(op);
    out << "<rect x=\"" << x << "\" y=\"" << legend_y << "\" width=\"14\" height=\"14\" fill=\""
        << st.color << "\"/><text x=\"" << x + 18 << "\" y=\"" << legend_y + 11 << "\">"
        << xml_escape(st.label) << "</text>\n";
    x += 200;
  }
  out << "</svg>\n";
  return out.str();
}

}  // namespace baleine::parallel
