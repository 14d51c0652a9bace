// Connected components of a binary mask given as column-major runs (the flips the RLE encoder collects).
//
// A Kaggle run numbers pixels top-to-bottom, then left-to-right, so a run may wrap from the bottom of one column to
// the top of the next. Its pixels are first split into segments, one per column it touches; two segments belong to
// the same component when they lie in neighbouring columns and touch, including diagonally (8-connectivity, as
// OpenCV's default). A union-find over the segments joins them in one sweep over neighbouring columns: O(runs +
// width) time and memory, independent of the mask's area.
#pragma once

#include <cstdint>
#include <vector>

namespace steelfast {

// Rows [top, bottom] (inclusive) of column x, and the component it belongs to.
struct Segment {
  int64_t x;
  int64_t top;
  int64_t bottom;
  int64_t component;
};

// Segments of the runs described by `flips` (sorted column-major pixel indices of an height x width mask: even
// entries start a run, odd entries end one, a missing final end means the run reaches the last pixel), in
// column-major order, each labelled with its component. Components are numbered 0, 1, ... in the column-major order
// of their first pixel; `components` receives their count.
std::vector<Segment> label_segments(const std::vector<int64_t>& flips, int64_t height, int64_t width,
                                    int64_t& components);

}  // namespace steelfast
