// Fused post-processing: probabilities -> per-class threshold -> minimum-area filter -> RLE text (and, for records,
// the defects: connected components with their boxes, areas, scores and own RLE text).
//
// Each (image, class) plane is thresholded one row at a time into a small 0/1 row buffer; rows are compared with
// the previous row to collect flips (flips.hpp), and the area is counted on the way. A full mask is never built, and
// a plane whose area is under its class's minimum is emitted as "" without formatting. The records entry point runs
// the same scan (also keeping the plane's largest probability), formats the same text, then labels the components of
// the sorted runs (components.hpp) and reads the probabilities back at the defect pixels only.
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

// One defect: an 8-connected component of a post-processed class mask.
struct Defect {
  int64_t left = 0, top = 0, width = 0, height = 0;  // bounding box in pixels
  int64_t area = 0;                                   // pixels
  double mean = 0.0;                                  // mean probability over its pixels
  float max = 0.0f;                                   // largest probability over its pixels
  std::string rle;                                    // its pixels as RLE text (same numbering as the plane's)
};

// The record of one (image, class) plane.
struct PlaneRecord {
  std::string rle;              // the text encode_probs gives for the plane
  float presence = 0.0f;        // largest probability in the plane, at least 0 (NaN and negatives are skipped)
  std::vector<Defect> defects;  // its components, in the column-major order of their first pixel; none when the
                                // plane's text is empty (area 0 or under the class's minimum area)
};

// The records of N * C planes (image-major), flattened for the binding: per plane its text, presence and defect
// count; per defect (all planes' defects in order) 5 integers (left, top, width, height, area), 2 scores (mean,
// max) and its text.
struct RecordTable {
  std::vector<std::string> rles;
  std::vector<float> presence;
  std::vector<int64_t> counts;
  std::vector<int64_t> boxes;
  std::vector<double> scores;
  std::vector<std::string> defect_rles;
};

// encode_probs plus the records: the same arguments, and rles equal to what encode_probs returns.
RecordTable encode_probs_records(const ProbView& probs, const std::vector<float>& thresholds,
                                 const std::vector<uint16_t>& half_thresholds, const std::vector<int64_t>& min_areas,
                                 int threads);

}  // namespace steelfast
