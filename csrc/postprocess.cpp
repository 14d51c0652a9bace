#include "postprocess.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "components.hpp"
#include "flips.hpp"
#include "parallel.hpp"
#include "rle.hpp"

namespace steelfast {
namespace {

constexpr uint16_t kHalfInfinity = 0x7C00;

// The largest of peak and row[0..width) under `greater` (which must be false for values to skip). Independent lanes
// keep the loop free of a carried dependency, so it vectorizes; one running maximum would serialize it.
template <class T, class Greater>
T row_peak(const T* row, int64_t width, T peak, Greater greater) {
  constexpr int64_t kLanes = 64 / sizeof(T);
  T lanes[kLanes];
  for (auto& lane : lanes) lane = peak;
  int64_t x = 0;
  for (; x + kLanes <= width; x += kLanes)
    for (int64_t k = 0; k < kLanes; ++k) lanes[k] = greater(row[x + k], lanes[k]) ? row[x + k] : lanes[k];
  for (; x < width; ++x) peak = greater(row[x], peak) ? row[x] : peak;
  for (const T lane : lanes) peak = greater(lane, peak) ? lane : peak;
  return peak;
}

// NaN never compares greater, so it is skipped.
bool float_greater(float a, float b) { return a > b; }

// Positive finite halves and +infinity order like their bit patterns; the sign bit and NaN patterns lie above
// kHalfInfinity and are skipped.
bool half_greater(uint16_t a, uint16_t b) { return (a > b) & (a <= kHalfInfinity); }

// Writes row[x] > threshold as 0/1 into out and returns the count. The unit-stride branch vectorizes. With kPeak it
// also raises `peak` to the largest value of the row (float_greater).
template <bool kPeak>
int64_t threshold_row(const float* row, int64_t stride, int64_t width, float threshold, uint8_t* out, float& peak) {
  int32_t area = 0;
  if (stride == 1) {
    for (int64_t x = 0; x < width; ++x) {
      const uint8_t set = row[x] > threshold;
      out[x] = set;
      area += set;
    }
    if constexpr (kPeak) peak = row_peak(row, width, peak, float_greater);
  } else {
    for (int64_t x = 0; x < width; ++x) {
      const float value = row[x * stride];
      const uint8_t set = value > threshold;
      out[x] = set;
      area += set;
      if constexpr (kPeak) peak = float_greater(value, peak) ? value : peak;
    }
  }
  return area;
}

// Half-precision variant on raw bits: positive finite halves order like their bit patterns, and anything with the
// sign bit or a NaN pattern is above kHalfInfinity, so one unsigned range test matches the float comparison. The
// peak is kept as bits too (half_greater).
template <bool kPeak>
int64_t threshold_row(const uint16_t* row, int64_t stride, int64_t width, uint16_t threshold, uint8_t* out,
                      uint16_t& peak) {
  int32_t area = 0;
  if (stride == 1) {
    for (int64_t x = 0; x < width; ++x) {
      const uint8_t set = (row[x] > threshold) & (row[x] <= kHalfInfinity);
      out[x] = set;
      area += set;
    }
    if constexpr (kPeak) peak = row_peak(row, width, peak, half_greater);
  } else {
    for (int64_t x = 0; x < width; ++x) {
      const uint16_t bits = row[x * stride];
      const uint8_t set = (bits > threshold) & (bits <= kHalfInfinity);
      out[x] = set;
      area += set;
      if constexpr (kPeak) peak = half_greater(bits, peak) ? bits : peak;
    }
  }
  return area;
}

float to_float(float value) { return value; }

// IEEE half bits to float, exactly (every half is a float).
float to_float(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1Fu, mantissa = bits & 0x3FFu;
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  const uint32_t out = sign | (exponent == 0x1F ? 0x7F800000u : (exponent + 112) << 23) | mantissa << 13;
  float value;
  std::memcpy(&value, &out, sizeof value);
  return value;
}

// Thresholds the plane row by row, collecting the flips between rows (flips.hpp); returns the defect area. The first
// row is compared with the last row of the previous column: in column-major numbering a run may wrap from the bottom
// of one column to the top of the next.
template <bool kPeak, class T, class Threshold>
int64_t scan_plane(const T* plane, const ProbView& p, Threshold threshold, detail::RowFlips& flips, T& peak) {
  const int64_t h = p.h, w = p.w;
  std::vector<uint8_t> last(w), prev(w), cur(w);
  T ignored = peak;
  threshold_row<false>(plane + (h - 1) * p.stride_h, p.stride_w, w, threshold, last.data(), ignored);
  int64_t area = threshold_row<kPeak>(plane, p.stride_w, w, threshold, prev.data(), peak);
  for (int64_t x = 0; x < w; ++x) {
    const uint8_t before = x > 0 ? last[x - 1] : 0;
    if (prev[x] != before) flips.add(x, 0);
  }
  for (int64_t y = 1; y < h; ++y) {
    area += threshold_row<kPeak>(plane + y * p.stride_h, p.stride_w, w, threshold, cur.data(), peak);
    detail::for_each_flip(cur.data(), prev.data(), w, [&](int64_t x) { flips.add(x, y); });
    std::swap(cur, prev);
  }
  return area;
}

template <class T, class Threshold>
std::string encode_plane(const T* plane, const ProbView& p, Threshold threshold, int64_t min_area) {
  detail::RowFlips flips(p.h, p.w);
  T peak{};
  const int64_t area = scan_plane<false>(plane, p, threshold, flips, peak);
  if (area == 0 || area < min_area) return std::string();
  return format_flips(flips.sorted(), p.h * p.w);
}

// The record of one plane: the same scan and text as encode_plane, then the components of the runs, each with its
// box, area, probabilities (read back only at its own pixels) and its own RLE text.
template <class T, class Threshold>
PlaneRecord record_plane(const T* plane, const ProbView& p, Threshold threshold, int64_t min_area) {
  detail::RowFlips flips(p.h, p.w);
  T peak{};
  const int64_t area = scan_plane<true>(plane, p, threshold, flips, peak);
  PlaneRecord record;
  record.presence = to_float(peak);
  if (area == 0 || area < min_area) return record;
  const int64_t total = p.h * p.w;
  const std::vector<int64_t> sorted = flips.sorted();
  record.rle = format_flips(sorted, total);
  int64_t count = 0;
  const std::vector<Segment> segments = label_segments(sorted, p.h, p.w, count);
  std::vector<Defect> defects(static_cast<size_t>(count));
  std::vector<std::vector<int64_t>> own(static_cast<size_t>(count));  // each component's flips
  std::vector<double> sums(static_cast<size_t>(count), 0.0);
  std::vector<int64_t> right(static_cast<size_t>(count)), bottom(static_cast<size_t>(count));
  for (const Segment& s : segments) {
    const auto k = static_cast<size_t>(s.component);
    Defect& d = defects[k];
    if (d.area == 0) {  // its first segment: the leftmost column
      d.left = s.x;
      d.top = s.top;
      bottom[k] = s.bottom;
    }
    d.top = std::min(d.top, s.top);
    bottom[k] = std::max(bottom[k], s.bottom);
    right[k] = s.x;
    d.area += s.bottom - s.top + 1;
    const T* column = plane + s.x * p.stride_w;
    for (int64_t y = s.top; y <= s.bottom; ++y) {
      const float value = to_float(column[y * p.stride_h]);
      sums[k] += value;
      d.max = std::max(d.max, value);
    }
    const int64_t begin = s.x * p.h + s.top, end = s.x * p.h + s.bottom + 1;
    std::vector<int64_t>& f = own[k];
    if (!f.empty() && f.back() == begin) {
      f.back() = end;  // continues its previous segment across the column boundary
    } else {
      f.push_back(begin);
      f.push_back(end);
    }
  }
  for (size_t k = 0; k < defects.size(); ++k) {
    Defect& d = defects[k];
    d.width = right[k] - d.left + 1;
    d.height = bottom[k] - d.top + 1;
    d.mean = sums[k] / static_cast<double>(d.area);
    d.rle = format_flips(own[k], total);
  }
  record.defects = std::move(defects);
  return record;
}

void check_classes(const char* what, const ProbView& probs, const std::vector<float>& thresholds,
                   const std::vector<uint16_t>& half_thresholds, const std::vector<int64_t>& min_areas) {
  const auto classes = static_cast<size_t>(probs.c);
  if (thresholds.size() != classes || half_thresholds.size() != classes || min_areas.size() != classes)
    throw std::invalid_argument(std::string(what) + ": need one threshold and one minimum area per class (" +
                                std::to_string(classes) + ")");
}

// Calls body(plane, threshold, c, i) for each (image, class) plane i = n * C + c on `threads` threads. The plane is
// typed by dtype once here, and the threshold comes in the plane's units: float32 probability, or float16 bits.
template <class Body>
void for_each_plane(const ProbView& probs, const std::vector<float>& thresholds,
                    const std::vector<uint16_t>& half_thresholds, int threads, Body&& body) {
  parallel_for(probs.n * probs.c, threads, [&](int64_t i) {
    const int64_t n = i / probs.c, c = i % probs.c;
    const int64_t offset = n * probs.stride_n + c * probs.stride_c;
    const auto k = static_cast<size_t>(c);
    if (probs.half) {
      body(static_cast<const uint16_t*>(probs.data) + offset, half_thresholds[k], k, i);
    } else {
      body(static_cast<const float*>(probs.data) + offset, thresholds[k], k, i);
    }
  });
}

}  // namespace

std::vector<std::string> encode_probs(const ProbView& probs, const std::vector<float>& thresholds,
                                      const std::vector<uint16_t>& half_thresholds,
                                      const std::vector<int64_t>& min_areas, int threads) {
  check_classes("encode_probs", probs, thresholds, half_thresholds, min_areas);
  std::vector<std::string> out(static_cast<size_t>(probs.n * probs.c));
  if (probs.h == 0 || probs.w == 0) return out;
  const auto encode = [&](const auto* plane, auto threshold, size_t c, int64_t i) {
    out[static_cast<size_t>(i)] = encode_plane(plane, probs, threshold, min_areas[c]);
  };
  for_each_plane(probs, thresholds, half_thresholds, threads, encode);
  return out;
}

RecordTable encode_probs_records(const ProbView& probs, const std::vector<float>& thresholds,
                                 const std::vector<uint16_t>& half_thresholds, const std::vector<int64_t>& min_areas,
                                 int threads) {
  check_classes("encode_probs_records", probs, thresholds, half_thresholds, min_areas);
  std::vector<PlaneRecord> planes(static_cast<size_t>(probs.n * probs.c));
  if (probs.h > 0 && probs.w > 0) {
    for_each_plane(probs, thresholds, half_thresholds, threads,
                   [&](const auto* plane, auto threshold, size_t c, int64_t i) {
                     planes[static_cast<size_t>(i)] = record_plane(plane, probs, threshold, min_areas[c]);
                   });
  }
  RecordTable table;
  for (PlaneRecord& plane : planes) {
    table.rles.push_back(std::move(plane.rle));
    table.presence.push_back(plane.presence);
    table.counts.push_back(static_cast<int64_t>(plane.defects.size()));
    for (Defect& d : plane.defects) {
      table.boxes.insert(table.boxes.end(), {d.left, d.top, d.width, d.height, d.area});
      table.scores.insert(table.scores.end(), {d.mean, static_cast<double>(d.max)});
      table.defect_rles.push_back(std::move(d.rle));
    }
  }
  return table;
}

}  // namespace steelfast
