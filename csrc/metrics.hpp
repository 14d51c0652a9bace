// Sorensen-Dice between binary masks, 2|X n Y| / (|X| + |Y|), defined as 1 when both are empty.
//
// On dense masks the three counts come from one pass that turns each byte into 0/1 and accumulates in 8-bit lanes
// for at most 255 steps before widening, which the compiler vectorizes. On RLE text the counts come from a merge of
// the two sorted run lists, so no mask is ever built.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace steelfast {

struct OverlapCounts {
  int64_t pred = 0;
  int64_t truth = 0;
  int64_t both = 0;
};

double dice_from_counts(const OverlapCounts& counts);

// Counts over two contiguous arrays of n elements of the same itemsize (1, 2, 4 or 8; nonzero = set).
OverlapCounts count_overlap(const void* pred, const void* truth, int itemsize, int64_t n);

// Dice for `pairs` mask pairs, pair i at pred + i * n and truth + i * n elements; out has `pairs` doubles.
void dice_many(const void* pred, const void* truth, int itemsize, int64_t pairs, int64_t n, double* out, int threads);

// Dice of two RLE texts of a mask with `total` pixels, from their runs. Throws RleError on malformed text.
double dice_rle(const std::string& a, const std::string& b, int64_t total);

// Elementwise dice_rle over two equally long lists; errors name the item index.
std::vector<double> dice_rle_many(const std::vector<std::string>& a, const std::vector<std::string>& b,
                                  int64_t total, int threads);

}  // namespace steelfast
