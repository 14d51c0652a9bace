// Finding where a binary state flips, fast.
//
// Two rows (or a column and itself shifted by one pixel) are compared 64 bytes at a time with a branch-free OR of
// XORs that the compiler vectorizes; only blocks whose bytes differ are inspected element by element. Equal bytes
// imply equal values, so a mask's own dtype can be compared raw and nonzero-ness checked only where bytes differ.
// The cost is therefore one streaming read of the mask plus work proportional to the number of flips.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace steelfast {
namespace detail {

inline bool bytes_differ_64(const unsigned char* a, const unsigned char* b) {
  unsigned char acc = 0;
  for (int k = 0; k < 64; ++k) acc |= static_cast<unsigned char>(a[k] ^ b[k]);
  return acc != 0;
}

// High bit of each byte of the result is set where the byte of w is nonzero (SWAR, no carries across bytes).
inline uint64_t nonzero_bytes(uint64_t w) {
  constexpr uint64_t kLow7 = 0x7F7F7F7F7F7F7F7FULL;
  return (((w & kLow7) + kLow7) | w) & ~kLow7;
}

inline uint64_t load64(const unsigned char* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof(w));  // unaligned-safe; compiles to one load
  return w;
}

// Calls on_flip(i) for each i in [0, n) where (a[i] != 0) != (b[i] != 0), in increasing i; a and b are contiguous.
template <class T, class OnFlip>
inline void for_each_flip(const T* a, const T* b, int64_t n, OnFlip&& on_flip) {
  constexpr int64_t kBlock = static_cast<int64_t>(64 / sizeof(T));
  const auto* pa = reinterpret_cast<const unsigned char*>(a);
  const auto* pb = reinterpret_cast<const unsigned char*>(b);
  int64_t i = 0;
  for (; i + kBlock <= n; i += kBlock) {
    if (!bytes_differ_64(pa + i * sizeof(T), pb + i * sizeof(T))) continue;
    if constexpr (sizeof(T) == 1) {
      // Visit only the bytes whose nonzero-ness differs: one bit per flip, found with count-trailing-zeros.
      for (int64_t w = 0; w < 64; w += 8) {
        uint64_t diff = nonzero_bytes(load64(pa + i + w)) ^ nonzero_bytes(load64(pb + i + w));
        while (diff) {
          on_flip(i + w + (__builtin_ctzll(diff) >> 3));
          diff &= diff - 1;
        }
      }
    } else {
      for (int64_t k = i; k < i + kBlock; ++k)
        if ((a[k] != 0) != (b[k] != 0)) on_flip(k);
    }
  }
  for (; i < n; ++i)
    if ((a[i] != 0) != (b[i] != 0)) on_flip(i);
}

// Collects flips discovered row by row (row 0 first, then y = 1, 2, ... in order) and sorts them into
// column-major order with a stable counting sort over columns: O(flips + width).
class RowFlips {
 public:
  RowFlips(int64_t height, int64_t width) : height_(height), width_(width) {}

  void add(int64_t x, int64_t y) { flips_.push_back({static_cast<uint32_t>(x), static_cast<uint32_t>(y)}); }

  std::vector<int64_t> sorted() const {
    std::vector<int64_t> start(static_cast<size_t>(width_) + 1, 0);
    for (const Flip& flip : flips_) ++start[flip.x + 1];
    for (int64_t x = 0; x < width_; ++x) start[x + 1] += start[x];
    std::vector<int64_t> out(flips_.size());
    for (const Flip& flip : flips_) out[start[flip.x]++] = static_cast<int64_t>(flip.x) * height_ + flip.y;
    return out;
  }

 private:
  struct Flip {
    uint32_t x, y;
  };
  int64_t height_;
  int64_t width_;
  std::vector<Flip> flips_;
};

}  // namespace detail
}  // namespace steelfast
