// Fused post-processing: probabilities -> per-class threshold -> minimum-area filter -> RLE text.
//
// Each (image, class) plane is thresholded one row at a time into a small 0/1 row buffer; rows are compared with
// the previous row to collect flips (flips.hpp), and the area is counted on the way. A full mask is never built, and
// a plane whose area is under its class's minimum is emitted as "" without formatting.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace steelfast {

// An (N, C, H, W) array of float32 or float16 (IEEE half as raw uint16 bits); strides in elements.
struct ProbView {
  const void* data;
  bool half;
  int64_t n, c, h, w;
  int64_t stride_n, stride_c, stride_h, stride_w;
};

// Returns N * C RLE strings (image-major). A pixel is set where prob > thresholds[c]; for float16 input the caller
// passes half_thresholds[c], the bits of the largest half value <= thresholds[c] (then prob > threshold exactly when
// bits(prob) > half_threshold, for non-negative non-NaN halves). A plane whose area < min_areas[c] becomes "".
std::vector<std::string> encode_probs(const ProbView& probs, const std::vector<float>& thresholds,
                                      const std::vector<uint16_t>& half_thresholds,
                                      const std::vector<int64_t>& min_areas, int threads);

}  // namespace steelfast
