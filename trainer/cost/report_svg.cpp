// cost-report.svg: one self-contained picture (no scripts, fonts or links) of where the
// device-hours went (by segment, by restart) and of the cost per trillion tokens beside
// DeepSeek-V3 and Llama 3.1 405B. The last panel is on a log scale: a CPU run and a 2048-GPU
// run differ by orders of magnitude.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "trainer/cost/report.h"
#include "trainer/cost/units.h"

namespace baleine::cost {

namespace {

constexpr int kWidth = 1100;
constexpr int kLabelRight = 250;   // labels end here, bars start after a gap
constexpr int kBarLeft = 260;
constexpr int kBarWidth = 560;
constexpr int kBarHeight = 18;
constexpr int kRowStep = 26;

// One colour per segment, in Segment order.
const char* const kSegmentColours[kSegmentCount] = {
    "#9e9e9e",  // startup
    "#2e7d32",  // compute
    "#1565c0",  // exposed communication
    "#f9a825",  // pipeline bubble
    "#6a1b9a",  // checkpoint I/O
    "#00838f",  // evaluation
    "#bcaaa4",  // idle
    "#c62828",  // lost work
};
// Hours a planned row predicts without saying where they go.
const char* const kUnsplitColour = "#e0e0e0";

std::string escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string px(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", v);
  return buf;
}

// Long labels (an outcome, a run name) are cut so they stay inside the picture.
std::string shorten(const std::string& s, size_t max_chars) {
  if (s.size() <= max_chars) return s;
  size_t cut = max_chars - 1;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // UTF-8 start
  return s.substr(0, cut) + "…";
}

class Canvas {
 public:
  void text(double x, double y, const std::string& s, const char* anchor = "start",
            const char* extra = "") {
    body_ += "<text x=\"" + px(x) + "\" y=\"" + px(y) + "\" text-anchor=\"" + anchor + "\"" +
             extra + ">" + escape(s) + "</text>\n";
  }
  void rect(double x, double y, double w, double h, const std::string& fill,
            const std::string& tooltip = "") {
    body_ += "<rect x=\"" + px(x) + "\" y=\"" + px(y) + "\" width=\"" + px(std::max(0.0, w)) +
             "\" height=\"" + px(h) + "\" fill=\"" + fill + "\"";
    body_ += tooltip.empty() ? "/>\n" : "><title>" + escape(tooltip) + "</title></rect>\n";
  }
  void line(double x1, double y1, double x2, double y2, const char* stroke) {
    body_ += "<line x1=\"" + px(x1) + "\" y1=\"" + px(y1) + "\" x2=\"" + px(x2) + "\" y2=\"" +
             px(y2) + "\" stroke=\"" + stroke + "\"/>\n";
  }
  void heading(double* y, const std::string& s) {
    *y += 34;
    text(10, *y, s, "start", " font-size=\"15\" font-weight=\"bold\"");
    *y += 12;
  }
  std::string document(int height, const std::string& title) const {
    const std::string w = std::to_string(kWidth), h = std::to_string(height);
    return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
           "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + w + "\" height=\"" + h +
           "\" viewBox=\"0 0 " + w + " " + h +
           "\" font-family=\"sans-serif\" font-size=\"12\">\n<title>" + escape(title) +
           "</title>\n<rect x=\"0\" y=\"0\" width=\"" + w + "\" height=\"" + h +
           "\" fill=\"white\"/>\n" + body_ + "</svg>\n";
  }

 private:
  std::string body_;
};

// A bar split by segment, then the hours no segment holds: `scale` pixels per device-hour.
void stacked_bar(Canvas* c, double y, const SegmentSeconds& hours, double unsplit,
                 double scale) {
  double x = kBarLeft;
  for (size_t s = 0; s < kSegmentCount; ++s) {
    const double w = hours[s] * scale;
    if (!(w > 0)) continue;
    c->rect(x, y, w, kBarHeight, kSegmentColours[s],
            std::string(segment_label(static_cast<Segment>(s))) + ": " + format_hours(hours[s]) +
                " GPU-hours");
    x += w;
  }
  if (unsplit > 0) {
    c->rect(x, y, unsplit * scale, kBarHeight, kUnsplitColour,
            "not split by segment (planned): " + format_hours(unsplit) + " GPU-hours");
  }
}

// With several rows their names may repeat (one run name for every phase): add the phase.
std::string row_label(const CostReport& report, const CostRow& r) {
  std::string label = r.name;
  if (report.rows.size() > 1) label += ", " + phase_title(r.phase);
  return label + (r.planned ? " (planned)" : "");
}

void segment_panel(Canvas* c, double* y, const CostReport& report) {
  c->heading(y, "GPU-hours by segment (each bar is 100% of its GPU-hours)");
  std::vector<std::pair<std::string, const CostRow*>> bars;
  for (const CostRow& r : report.rows) bars.emplace_back(row_label(report, r), &r);
  if (report.rows.size() > 1) bars.emplace_back("Total", &report.total);
  for (const auto& [label, r] : bars) {
    c->text(kLabelRight, *y + 13, shorten(label, 38), "end");
    if (r->device_hours > 0) {
      stacked_bar(c, *y, r->segment_hours, unsplit_hours(*r), kBarWidth / r->device_hours);
    } else {
      c->rect(kBarLeft, *y, kBarWidth, kBarHeight, "#eeeeee");
    }
    c->text(kBarLeft + kBarWidth + 8, *y + 13, format_hours(r->device_hours) + " GPU-hours");
    *y += kRowStep;
  }
  // Legend: the segments in lines of four (and the planned hours' colour when it is used).
  std::vector<std::pair<std::string, const char*>> entries;
  for (size_t s = 0; s < kSegmentCount; ++s) {
    entries.emplace_back(segment_label(static_cast<Segment>(s)), kSegmentColours[s]);
  }
  if (unsplit_hours(report.total) > 0) entries.emplace_back("not split (planned)", kUnsplitColour);
  *y += 6;
  for (size_t i = 0; i < entries.size(); ++i) {
    const double x = kBarLeft + static_cast<double>(i % 4) * 190;
    const double ly = *y + static_cast<double>(i / 4) * 20;
    c->rect(x, ly, 12, 12, entries[i].second);
    c->text(x + 17, ly + 10, entries[i].first);
  }
  *y += 4 + 20 * static_cast<double>((entries.size() + 3) / 4);
}

void restart_panel(Canvas* c, double* y, const CostReport& report) {
  c->heading(y, "GPU-hours by restart (bars of one run share a scale)");
  bool any = false;
  for (const CostRow& r : report.rows) {
    double largest = 0;
    for (const RestartCost& rc : r.restarts) largest = std::max(largest, rc.device_hours);
    for (const RestartCost& rc : r.restarts) {
      any = true;
      c->text(kLabelRight, *y + 13,
              shorten(row_label(report, r), 26) + ", restart " + std::to_string(rc.restart), "end");
      if (largest > 0) stacked_bar(c, *y, rc.segment_hours, 0.0, kBarWidth / largest);
      c->text(kBarLeft + kBarWidth + 8, *y + 13,
              format_hours(rc.device_hours) + " GPU-hours, " + shorten(rc.outcome, 28));
      *y += kRowStep;
    }
  }
  if (!any) {
    c->text(kBarLeft, *y + 13, "no restarts: every row is planned, not measured");
    *y += kRowStep;
  }
}

struct RateBar {
  std::string label;
  double value;  // H800-equivalent hours per trillion tokens
  const char* fill;
};

void rate_panel(Canvas* c, double* y, const CostReport& report) {
  c->heading(y, "H800-equivalent GPU-hours per trillion tokens (log scale)");
  std::vector<RateBar> bars;
  std::vector<std::string> untrained;
  for (const CostRow& r : report.rows) {
    const double v = h800_hours_per_trillion_tokens(r);
    if (v > 0) {
      bars.push_back({row_label(report, r), v, r.planned ? "#90caf9" : "#1565c0"});
    } else {
      untrained.push_back(row_label(report, r));
    }
  }
  for (const ReferenceComparison& ref : reference_comparisons(report.total.usd_per_gpu_hour)) {
    bars.push_back({ref.name + " (published)", ref.h800_hours_per_trillion_tokens, "#757575"});
  }
  double lo = 1e300, hi = 0;
  for (const RateBar& b : bars) {
    lo = std::min(lo, b.value);
    hi = std::max(hi, b.value);
  }
  // Whole decades, at least one, so every bar has a visible length.
  const double lo_decade = std::floor(std::log10(lo)) - 1;
  const double hi_decade = std::max(std::ceil(std::log10(hi)), lo_decade + 1);
  const double per_decade = kBarWidth / (hi_decade - lo_decade);
  auto x_of = [&](double v) { return kBarLeft + (std::log10(v) - lo_decade) * per_decade; };

  *y += 4;
  // The decade grid first, so the bars are drawn over it.
  const double axis_bottom = *y + kRowStep * static_cast<double>(bars.size());
  for (double d = lo_decade; d <= hi_decade + 0.5; d += 1) {
    const double x = kBarLeft + (d - lo_decade) * per_decade;
    c->line(x, *y - 4, x, axis_bottom, "#cccccc");
    c->text(x, axis_bottom + 14, format_hours(std::pow(10.0, d)), "middle", " font-size=\"10\"");
  }
  for (const RateBar& b : bars) {
    c->text(kLabelRight, *y + 13, shorten(b.label, 38), "end");
    c->rect(kBarLeft, *y, x_of(b.value) - kBarLeft, kBarHeight, b.fill);
    c->text(x_of(b.value) + 6, *y + 13, format_hours(b.value));
    *y += kRowStep;
  }
  *y += 34;
  c->text(10, *y, "H800-equivalent hours = GPU-hours x the device's dense BF16 peak / H800's (" +
                      px(h800_peak_bf16_tflops()) + " TFLOP/s): hardware capacity, not speed.",
          "start", " font-size=\"11\"");
  for (const ReferenceComparison& ref : reference_comparisons(report.total.usd_per_gpu_hour)) {
    *y += 16;
    c->text(10, *y, ref.name + ": " + ref.per_trillion_basis + " over its " +
                        format_count(ref.tokens) + " pre-training tokens (" +
                        shorten(ref.source, 70) + ").",
            "start", " font-size=\"11\"");
  }
  if (!untrained.empty()) {
    std::string names;
    for (const std::string& n : untrained) names += (names.empty() ? "" : ", ") + n;
    *y += 16;
    c->text(10, *y, "Not shown (no tokens trained): " + names, "start", " font-size=\"11\"");
  }
}

}  // namespace

std::string report_svg(const CostReport& report) {
  Canvas c;
  std::string names;
  for (const CostRow& r : report.rows) names += (names.empty() ? "" : ", ") + row_label(report, r);
  const std::string title = "baleine cost report: " + names;
  c.text(10, 22, shorten(title, 120), "start", " font-size=\"17\" font-weight=\"bold\"");
  double y = 28;
  segment_panel(&c, &y, report);
  restart_panel(&c, &y, report);
  rate_panel(&c, &y, report);
  return c.document(static_cast<int>(y) + 20, title);
}

}  // namespace baleine::cost
