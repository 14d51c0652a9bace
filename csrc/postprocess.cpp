#include "postprocess.hpp"

#include <stdexcept>
#include <utility>

#include "flips.hpp"
#include "parallel.hpp"
#include "rle.hpp"

namespace steelfast {
namespace {

constexpr uint16_t kHalfInfinity = 0x7C00;

// Writes row[x] > threshold as 0/1 into out and returns the count. The unit-stride branch vectorizes.
int64_t threshold_row(const float* row, int64_t stride, int64_t width, float threshold, uint8_t* out) {
  int32_t area = 0;
  if (stride == 1) {
    for (int64_t x = 0; x < width; ++x) {
      const uint8_t set = row[x] > threshold;
      out[x] = set;
      area += set;
    }
  } else {
    for (int64_t x = 0; x < width; ++x) {
      const uint8_t set = row[x * stride] > threshold;
      out[x] = set;
      area += set;
    }
  }
  return area;
}

// Half-precision variant on raw bits: positive finite halves order like their bit patterns, and anything with the
// sign bit or a NaN pattern is above kHalfInfinity, so one unsigned range test matches the float comparison.
int64_t threshold_row(const uint16_t* row, int64_t stride, int64_t width, uint16_t threshold, uint8_t* out) {
  int32_t area = 0;
  if (stride == 1) {
    for (int64_t x = 0; x < width; ++x) {
      const uint8_t set = (row[x] > threshold) & (row[x] <= kHalfInfinity);
      out[x] = set;
      area += set;
    }
  } else {
    for (int64_t x = 0; x < width; ++x) {
      const uint16_t bits = row[x * stride];
      const uint8_t set = (bits > threshold) & (bits <= kHalfInfinity);
      out[x] = set;
      area += set;
    }
  }
  return area;
}

template <class T, class Threshold>
std::string encode_plane(const T* plane, const ProbView& p, Threshold threshold, int64_t min_area) {
  const int64_t h = p.h, w = p.w;
  std::vector<uint8_t> last(w), prev(w), cur(w);
  threshold_row(plane + (h - 1) * p.stride_h, p.stride_w, w, threshold, last.data());
  int64_t area = threshold_row(plane, p.stride_w, w, threshold, prev.data());
  detail::RowFlips flips(h, w);
  for (int64_t x = 0; x < w; ++x) {
    const uint8_t before = x > 0 ? last[x - 1] : 0;
    if (prev[x] != before) flips.add(x, 0);
  }
  for (int64_t y = 1; y < h; ++y) {
    area += threshold_row(plane + y * p.stride_h, p.stride_w, w, threshold, cur.data());
    detail::for_each_flip(cur.data(), prev.data(), w, [&](int64_t x) { flips.add(x, y); });
    std::swap(cur, prev);
  }
  if (area == 0 || area < min_area) return std::string();
  return format_flips(flips.sorted(), h * w);
}

}  // namespace

std::vector<std::string> encode_probs(const ProbView& probs, const std::vector<float>& thresholds,
                                      const std::vector<uint16_t>& half_thresholds,
                                      const std::vector<int64_t>& min_areas, int threads) {
  const auto classes = static_cast<size_t>(probs.c);
  if (thresholds.size() != classes || half_thresholds.size() != classes || min_areas.size() != classes)
    throw std::invalid_argument("encode_probs: need one threshold and one minimum area per class (" +
                                std::to_string(classes) + ")");
  std::vector<std::string> out(static_cast<size_t>(probs.n * probs.c));
  if (probs.h == 0 || probs.w == 0) return out;
  parallel_for(probs.n * probs.c, threads, [&](int64_t i) {
    const int64_t n = i / probs.c, c = i % probs.c;
    const int64_t offset = n * probs.stride_n + c * probs.stride_c;
    if (probs.half) {
      const auto* plane = static_cast<const uint16_t*>(probs.data) + offset;
      out[static_cast<size_t>(i)] = encode_plane(plane, probs, half_thresholds[c], min_areas[c]);
    } else {
      const auto* plane = static_cast<const float*>(probs.data) + offset;
      out[static_cast<size_t>(i)] = encode_plane(plane, probs, thresholds[c], min_areas[c]);
    }
  });
  return out;
}

}  // namespace steelfast
