// Finding where a binary state flips, fast.
//
// Two rows (or a column and itself shifted by one pixel) are compared 64 bytes at a time (simd.hpp); only blocks
// whose bytes differ are inspected element by element. Equal bytes imply equal values, so a mask's own dtype can be
// compared raw and nonzero-ness checked only where bytes differ.
// The cost is therefore one streaming read of the mask plus work proportional to the number of flips.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "simd.hpp"

namespace steelfast {
namespace detail {

// Calls on_flip(i + k) for each k in [0, 64 / sizeof(T)) where (a[k] != 0) != (b[k] != 0): one 64-byte block of
// 2-, 4- or 8-byte elements (1-byte elements get their flip bits straight from the kernels, for_each_flip_bit).
template <class T, class OnFlip>
inline void block_flips(const T* a, const T* b, int64_t i, OnFlip& on_flip) {
  for (int64_t k = 0; k < static_cast<int64_t>(64 / sizeof(T)); ++k)
    if ((a[k] != 0) != (b[k] != 0)) on_flip(i + k);
}

constexpr int64_t kChunk = 256;  // blocks per kernel call: 16 KiB of input, 1 KiB of indices on the stack

// For 1-byte elements: runs kernel(first, count, found, bits) (a flip_masks_* call on blocks [first, first + count))
// chunk by chunk over nblocks blocks and calls on_flip for every set bit of the block masks it returns.
template <class Kernel, class OnFlip>
inline void for_each_flip_bit(int64_t nblocks, Kernel&& kernel, OnFlip& on_flip) {
  int32_t found[kChunk];
  uint64_t bits[kChunk];
  for (int64_t first = 0; first < nblocks; first += kChunk) {
    const int64_t count = kernel(first, std::min(kChunk, nblocks - first), found, bits);
    for (int64_t j = 0; j < count; ++j) {
      const int64_t i = (first + found[j]) * 64;
      for (uint64_t rest = bits[j]; rest; rest &= rest - 1) on_flip(i + __builtin_ctzll(rest));
    }
  }
}

// Calls on_flip(i) for each i in [0, n) where (a[i] != 0) != (b[i] != 0), in increasing i; a and b are contiguous.
template <class T, class OnFlip>
inline void for_each_flip(const T* a, const T* b, int64_t n, OnFlip&& on_flip) {
  constexpr int64_t kBlock = static_cast<int64_t>(64 / sizeof(T));
  const auto* pa = reinterpret_cast<const unsigned char*>(a);
  const auto* pb = reinterpret_cast<const unsigned char*>(b);
  const int64_t nblocks = n / kBlock;
  if constexpr (sizeof(T) == 1) {
    // The kernel hands back each block's flip bits: no second pass over the block's bytes.
    for_each_flip_bit(
        nblocks,
        [&](int64_t first, int64_t count, int32_t* found, uint64_t* bits) {
          return flip_masks_u8(pa + first * 64, pb + first * 64, count, found, bits);
        },
        on_flip);
  } else {
    int32_t found[kChunk];
    for (int64_t first = 0; first < nblocks; first += kChunk) {
      const int64_t count =
          differing_blocks(pa + first * 64, pb + first * 64, std::min(kChunk, nblocks - first), found);
      for (int64_t j = 0; j < count; ++j) {
        const int64_t i = (first + found[j]) * kBlock;
        block_flips(a + i, b + i, i, on_flip);
      }
    }
  }
  for (int64_t i = nblocks * kBlock; i < n; ++i)
    if ((a[i] != 0) != (b[i] != 0)) on_flip(i);
}

// Calls on_flip(i) for each i in [1, n) where (x[i] != 0) != (x[i - 1] != 0), in increasing i; x is contiguous.
template <class T, class OnFlip>
inline void for_each_flip_along(const T* x, int64_t n, OnFlip&& on_flip) {
  constexpr int64_t kBlock = static_cast<int64_t>(64 / sizeof(T));
  const auto* px = reinterpret_cast<const unsigned char*>(x);
  const int64_t nblocks = n / kBlock;
  if constexpr (sizeof(T) == 1) {
    for_each_flip_bit(
        nblocks,
        [&](int64_t first, int64_t count, int32_t* found, uint64_t* bits) {
          return flip_masks_along_u8(px + first * 64, count, first > 0, found, bits);
        },
        on_flip);
  } else {
    int32_t found[kChunk];
    for (int64_t first = 0; first < nblocks; first += kChunk) {
      const int64_t count = nonuniform_blocks(px + first * 64, std::min(kChunk, nblocks - first),
                                              static_cast<int>(sizeof(T)), first > 0, found);
      for (int64_t j = 0; j < count; ++j) {
        const int64_t i = (first + found[j]) * kBlock;
        if (i > 0) {
          block_flips(x + i, x + i - 1, i, on_flip);
        } else {  // the first block has no element before it
          for (int64_t k = 1; k < kBlock; ++k)
            if ((x[k] != 0) != (x[k - 1] != 0)) on_flip(k);
        }
      }
    }
  }
  for (int64_t i = std::max<int64_t>(nblocks * kBlock, 1); i < n; ++i)
    if ((x[i] != 0) != (x[i - 1] != 0)) on_flip(i);
}

// Collects flips discovered row by row (row 0 first, then y = 1, 2, ... in order) and sorts them into
// column-major order with a stable counting sort over columns: O(flips + width).
class RowFlips {
 public:
  RowFlips(int64_t height, int64_t width) : height_(height), width_(width) {}

  // One 64-bit key built in a register: a {x, y} struct written as two 32-bit halves and read back as one
  // 64-bit word stalls store forwarding on every flip (measured: a third of the encoder's time).
  void add(int64_t x, int64_t y) { keys_.push_back(static_cast<uint64_t>(x) << 32 | static_cast<uint64_t>(y)); }

  std::vector<int64_t> sorted() const {
    std::vector<int64_t> start(static_cast<size_t>(width_) + 1, 0);
    for (const uint64_t key : keys_) ++start[(key >> 32) + 1];
    for (int64_t x = 0; x < width_; ++x) start[x + 1] += start[x];
    std::vector<int64_t> out(keys_.size());
    for (const uint64_t key : keys_) {
      const int64_t x = static_cast<int64_t>(key >> 32);
      out[static_cast<size_t>(start[x]++)] = x * height_ + static_cast<int64_t>(key & 0xFFFFFFFFu);
    }
    return out;
  }

 private:
  int64_t height_;
  int64_t width_;
  std::vector<uint64_t> keys_;
};

}  // namespace detail
}  // namespace steelfast
