// Kaggle run-length encoding of binary masks.
//
// Format: "start length start length ...", starts 1-indexed, pixels numbered top-to-bottom then left-to-right
// (column-major) over an H x W mask. Internally a Run holds a 0-based start. Encoding finds the pixels where the
// defect state flips (see flips.hpp) and formats the numbers with std::to_chars; decoding parses digits in one pass
// and validates every run before touching memory.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace steelfast {

// Malformed RLE text. Surfaces in Python as steelfast.rle.RLEError, a ValueError.
class RleError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct Run {
  int64_t start;   // 0-based pixel index in encoding order
  int64_t length;  // >= 1
};

// A 2-D mask in memory: strides are in elements, itemsize is 1, 2, 4 or 8 (nonzero = defect).
struct MaskView {
  const void* data;
  int itemsize;
  int64_t height;
  int64_t width;
  int64_t stride_h;
  int64_t stride_w;
};

// Parses and validates RLE text for a mask of `total` pixels: even token count, integer tokens, start >= 1,
// length >= 1, runs inside [1, total], starts increasing and runs not overlapping. Throws RleError naming the token.
std::vector<Run> parse_rle(std::string_view text, int64_t total);

// Sum of the run lengths of validated text.
int64_t rle_area(std::string_view text, int64_t total);

// Formats sorted flip positions (0-based; even entries start a run, odd entries end one, a missing final end
// means the run reaches `total`) as RLE text. Positions must be increasing and in [0, total); std::logic_error
// otherwise, when a number does not fit the scratch buffer sized for that.
std::string format_flips(const std::vector<int64_t>& flips, int64_t total);

// Sorted flip positions of the nonzero pixels of `mask` in column-major order.
std::vector<int64_t> mask_flips(const MaskView& mask);

// RLE text of `mask` (column-major numbering; pass a transposed view for row-major numbering).
std::string encode_mask(const MaskView& mask);

// Sets out[p] = 1 for every pixel p of `runs`; `out` holds the mask in its numbering order (for Kaggle's column-major
// numbering that is a Fortran-ordered H x W array), so each run is one memset. Runs must be validated.
void paint_runs(const std::vector<Run>& runs, uint8_t* out);

// Encodes `count` masks; mask i starts at data + (i / inner) * stride_outer + (i % inner) * stride_inner
// (strides in elements), so both (N, H, W) and (N, C, H, W) layouts are covered.
std::vector<std::string> encode_masks(const MaskView& first, int64_t count, int64_t inner, int64_t stride_outer,
                                      int64_t stride_inner, int threads);

// Decodes texts into out: count slices of `total` bytes. With `zeroed` out holds only zeros (a fresh np.zeros array)
// and only the runs are painted, so untouched pages are never written; otherwise out may hold anything and every
// byte is written once. out_size is checked against count * total. Errors name the item index; on error the contents
// of out are unspecified.
void decode_many(const std::vector<std::string>& texts, uint8_t* out, int64_t out_size, int64_t total, int threads,
                 bool zeroed);

// rle_area of each text; errors name the item index.
std::vector<int64_t> areas_many(const std::vector<std::string>& texts, int64_t total, int threads);

}  // namespace steelfast
