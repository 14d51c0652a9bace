#include "metrics.hpp"

#include <algorithm>
#include <stdexcept>

#include "parallel.hpp"
#include "rle.hpp"

namespace steelfast {
namespace {

template <class T>
OverlapCounts count_typed(const T* a, const T* b, int64_t n) {
  constexpr int kLanes = 32;
  constexpr int64_t kChunk = 255 * kLanes;  // 8-bit lane counters cannot overflow within a chunk
  OverlapCounts counts;
  for (int64_t base = 0; base < n; base += kChunk) {
    const int64_t m = std::min(kChunk, n - base);
    uint8_t lane_a[kLanes] = {}, lane_b[kLanes] = {}, lane_both[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= m; i += kLanes) {
      const T* pa = a + base + i;
      const T* pb = b + base + i;
      for (int k = 0; k < kLanes; ++k) {
        const uint8_t x = pa[k] != 0;
        const uint8_t y = pb[k] != 0;
        lane_a[k] += x;
        lane_b[k] += y;
        lane_both[k] += x & y;
      }
    }
    for (int k = 0; k < kLanes; ++k) {
      counts.pred += lane_a[k];
      counts.truth += lane_b[k];
      counts.both += lane_both[k];
    }
    for (; i < m; ++i) {
      const bool x = a[base + i] != 0;
      const bool y = b[base + i] != 0;
      counts.pred += x;
      counts.truth += y;
      counts.both += x && y;
    }
  }
  return counts;
}

}  // namespace

double dice_from_counts(const OverlapCounts& counts) {
  const int64_t sum = counts.pred + counts.truth;
  return sum == 0 ? 1.0 : 2.0 * static_cast<double>(counts.both) / static_cast<double>(sum);
}

OverlapCounts count_overlap(const void* pred, const void* truth, int itemsize, int64_t n) {
  switch (itemsize) {
    case 1: return count_typed(static_cast<const uint8_t*>(pred), static_cast<const uint8_t*>(truth), n);
    case 2: return count_typed(static_cast<const uint16_t*>(pred), static_cast<const uint16_t*>(truth), n);
    case 4: return count_typed(static_cast<const uint32_t*>(pred), static_cast<const uint32_t*>(truth), n);
    case 8: return count_typed(static_cast<const uint64_t*>(pred), static_cast<const uint64_t*>(truth), n);
    default: throw std::invalid_argument("mask itemsize must be 1, 2, 4 or 8, got " + std::to_string(itemsize));
  }
}

void dice_many(const void* pred, const void* truth, int itemsize, int64_t pairs, int64_t n, double* out,
               int threads) {
  const auto* a = static_cast<const unsigned char*>(pred);
  const auto* b = static_cast<const unsigned char*>(truth);
  const int64_t step = n * itemsize;
  parallel_for(pairs, threads, [&](int64_t i) {
    out[i] = dice_from_counts(count_overlap(a + i * step, b + i * step, itemsize, n));
  });
}

double dice_rle(const std::string& a, const std::string& b, int64_t total) {
  const std::vector<Run> x = parse_rle(a, total);
  const std::vector<Run> y = parse_rle(b, total);
  OverlapCounts counts;
  for (const Run& run : x) counts.pred += run.length;
  for (const Run& run : y) counts.truth += run.length;
  size_t i = 0, j = 0;
  while (i < x.size() && j < y.size()) {
    const int64_t x_end = x[i].start + x[i].length;
    const int64_t y_end = y[j].start + y[j].length;
    const int64_t lo = std::max(x[i].start, y[j].start);
    const int64_t hi = std::min(x_end, y_end);
    if (hi > lo) counts.both += hi - lo;
    if (x_end < y_end) ++i; else ++j;
  }
  return dice_from_counts(counts);
}

std::vector<double> dice_rle_many(const std::vector<std::string>& a, const std::vector<std::string>& b,
                                  int64_t total, int threads) {
  if (a.size() != b.size())
    throw std::invalid_argument("dice_rle_many: " + std::to_string(a.size()) + " predictions but " +
                                std::to_string(b.size()) + " truths");
  std::vector<double> out(a.size());
  parallel_for(static_cast<int64_t>(a.size()), threads, [&](int64_t i) {
    try {
      out[static_cast<size_t>(i)] = dice_rle(a[static_cast<size_t>(i)], b[static_cast<size_t>(i)], total);
    } catch (const RleError& error) {
      throw RleError("item " + std::to_string(i) + ": " + error.what());
    }
  });
  return out;
}

}  // namespace steelfast
