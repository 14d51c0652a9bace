#include "components.hpp"

#include <algorithm>
#include <numeric>

namespace steelfast {
namespace {

// Union-find whose root is always the smallest index of its set, so labels follow segment order.
class DisjointSets {
 public:
  explicit DisjointSets(size_t n) : parent_(n) { std::iota(parent_.begin(), parent_.end(), size_t{0}); }

  size_t find(size_t i) {
    while (parent_[i] != i) {
      parent_[i] = parent_[parent_[i]];  // path halving
      i = parent_[i];
    }
    return i;
  }

  void join(size_t a, size_t b) {
    a = find(a);
    b = find(b);
    if (a < b) parent_[b] = a;
    if (b < a) parent_[a] = b;
  }

 private:
  std::vector<size_t> parent_;
};

}  // namespace

std::vector<Segment> label_segments(const std::vector<int64_t>& flips, int64_t height, int64_t width,
                                    int64_t& components) {
  std::vector<Segment> segments;
  components = 0;
  const int64_t total = height * width;
  for (size_t i = 0; i < flips.size(); i += 2) {
    int64_t start = flips[i];
    const int64_t end = i + 1 < flips.size() ? flips[i + 1] : total;
    while (start < end) {  // one segment per column the run touches
      const int64_t x = start / height;
      const int64_t stop = std::min(end, (x + 1) * height);
      segments.push_back(Segment{x, start - x * height, stop - 1 - x * height, 0});
      start = stop;
    }
  }
  DisjointSets sets(segments.size());
  // Sweep pairs of neighbouring columns: prev = [p, p_end) holds column x - 1, cur = [c, c_end) column x. Segment
  // a of column x - 1 touches segment b of column x when a.top - 1 <= b.bottom and b.top <= a.bottom + 1. Both
  // lists are sorted with increasing tops and bottoms, so a two-pointer walk finds every touching pair: after
  // testing a pair, the one that ends first (a, on a tie, as a.bottom + 1 is the reach of a) cannot touch the next
  // segment of the other column.
  size_t p = 0, c = 0;
  while (c < segments.size()) {
    size_t c_end = c;
    while (c_end < segments.size() && segments[c_end].x == segments[c].x) ++c_end;
    if (p < c && segments[p].x == segments[c].x - 1) {
      size_t a = p, b = c;
      while (a < c && b < c_end) {
        if (segments[a].top - 1 <= segments[b].bottom && segments[b].top <= segments[a].bottom + 1) sets.join(a, b);
        if (segments[a].bottom + 1 <= segments[b].bottom) {
          ++a;
        } else {
          ++b;
        }
      }
    }
    p = c;
    c = c_end;
  }
  std::vector<int64_t> label(segments.size());
  for (size_t i = 0; i < segments.size(); ++i) {
    const size_t root = sets.find(i);
    label[i] = root == i ? components++ : label[root];  // a root precedes the rest of its set
    segments[i].component = label[i];
  }
  return segments;
}

}  // namespace steelfast
