#include "simd.hpp"

#include <cstdlib>
#include <cstring>

#ifdef STEELFAST_X86_DISPATCH
#include <immintrin.h>
#endif

// The portable kernels read 8 bytes as one word and take byte j from bits 8j..8j+7: little-endian only.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "steelfast's portable block kernels assume a little-endian CPU"
#endif

namespace steelfast {
namespace detail {
namespace {

using DifferingBlocks = int64_t (*)(const unsigned char*, const unsigned char*, int64_t, int32_t*);
using NonuniformBlocks = int64_t (*)(const unsigned char*, int64_t, int, bool, int32_t*);
using FlipMasksU8 = int64_t (*)(const unsigned char*, const unsigned char*, int64_t, int32_t*, uint64_t*);
using FlipMasksAlongU8 = int64_t (*)(const unsigned char*, int64_t, bool, int32_t*, uint64_t*);

// High bit of each byte set where the byte is nonzero (SWAR, no carries across bytes).
uint64_t nonzero_high_bits(uint64_t w) {
  constexpr uint64_t kLow7 = 0x7F7F7F7F7F7F7F7FULL;
  return (((w & kLow7) + kLow7) | w) & ~kLow7;
}

// Bit j set where byte j of the 64-byte block is zero.
uint64_t zero_bits_64(const unsigned char* block) {
  uint64_t bits = 0;
  for (int j = 0; j < 64; ++j) bits |= static_cast<uint64_t>(block[j] == 0) << j;
  return bits;
}

int64_t flip_masks_along_u8_portable(const unsigned char* data, int64_t nblocks, bool has_before,
                                     int32_t* out_index, uint64_t* out_bits) {
  int64_t count = 0;
  uint64_t carry = has_before ? static_cast<uint64_t>(data[-1] == 0) : static_cast<uint64_t>(nblocks > 0 && data[0] == 0);
  for (int64_t k = 0; k < nblocks; ++k) {
    const uint64_t zero = zero_bits_64(data + k * 64);
    const uint64_t bits = zero ^ (zero << 1 | carry);  // byte j against byte j - 1
    carry = zero >> 63;
    out_index[count] = static_cast<int32_t>(k);
    out_bits[count] = bits;
    count += bits != 0;
  }
  return count;
}

int64_t flip_masks_u8_portable(const unsigned char* a, const unsigned char* b, int64_t nblocks, int32_t* out_index,
                               uint64_t* out_bits) {
  int64_t count = 0;
  for (int64_t k = 0; k < nblocks; ++k) {
    uint64_t bits = 0;
    for (int w = 0; w < 8; ++w) {
      uint64_t wa, wb;
      std::memcpy(&wa, a + k * 64 + w * 8, 8);
      std::memcpy(&wb, b + k * 64 + w * 8, 8);
      if (wa == wb) continue;
      // Gather the 8 high bits into one byte (multiply-shift), little-endian byte order.
      const uint64_t high = (nonzero_high_bits(wa) ^ nonzero_high_bits(wb)) >> 7;
      bits |= ((high * 0x0102040810204080ULL) >> 56) << (w * 8);
    }
    out_index[count] = static_cast<int32_t>(k);
    out_bits[count] = bits;
    count += bits != 0;
  }
  return count;
}

template <int kElem>
int64_t nonuniform_blocks_portable_t(const unsigned char* data, int64_t nblocks, bool has_before, int32_t* out) {
  int64_t count = 0;
  for (int64_t k = 0; k < nblocks; ++k) {
    const unsigned char* block = data + k * 64;
    const unsigned char* before = k > 0 || has_before ? block - kElem : block;
    unsigned char acc = 0;
    for (int i = 0; i < 64; ++i) acc |= static_cast<unsigned char>(block[i] ^ before[i % kElem]);
    out[count] = static_cast<int32_t>(k);
    count += acc != 0;
  }
  return count;
}

int64_t nonuniform_blocks_portable(const unsigned char* data, int64_t nblocks, int elem_size, bool has_before,
                                   int32_t* out) {
  switch (elem_size) {
    case 1: return nonuniform_blocks_portable_t<1>(data, nblocks, has_before, out);
    case 2: return nonuniform_blocks_portable_t<2>(data, nblocks, has_before, out);
    case 4: return nonuniform_blocks_portable_t<4>(data, nblocks, has_before, out);
    default: return nonuniform_blocks_portable_t<8>(data, nblocks, has_before, out);
  }
}

int64_t differing_blocks_portable(const unsigned char* a, const unsigned char* b, int64_t nblocks, int32_t* out) {
  int64_t count = 0;
  for (int64_t k = 0; k < nblocks; ++k) {
    const unsigned char* pa = a + k * 64;
    const unsigned char* pb = b + k * 64;
    unsigned char acc = 0;
    for (int i = 0; i < 64; ++i) acc |= static_cast<unsigned char>(pa[i] ^ pb[i]);  // vectorized by the compiler
    out[count] = static_cast<int32_t>(k);  // branch-free: written always, kept only when the block differs
    count += acc != 0;
  }
  return count;
}

#ifdef STEELFAST_X86_DISPATCH
__attribute__((target("avx2"))) int64_t differing_blocks_avx2(const unsigned char* a, const unsigned char* b,
                                                               int64_t nblocks, int32_t* out) {
  int64_t count = 0;
  for (int64_t k = 0; k < nblocks; ++k) {
    const auto* pa = reinterpret_cast<const __m256i*>(a + k * 64);
    const auto* pb = reinterpret_cast<const __m256i*>(b + k * 64);
    const __m256i low = _mm256_xor_si256(_mm256_loadu_si256(pa), _mm256_loadu_si256(pb));
    const __m256i high = _mm256_xor_si256(_mm256_loadu_si256(pa + 1), _mm256_loadu_si256(pb + 1));
    const __m256i any = _mm256_or_si256(low, high);
    out[count] = static_cast<int32_t>(k);
    count += !_mm256_testz_si256(any, any);
  }
  return count;
}

__attribute__((target("avx2"))) int64_t flip_masks_u8_avx2(const unsigned char* a, const unsigned char* b,
                                                            int64_t nblocks, int32_t* out_index, uint64_t* out_bits) {
  const __m256i zero = _mm256_setzero_si256();
  int64_t count = 0;
  for (int64_t k = 0; k < nblocks; ++k) {
    const auto* pa = reinterpret_cast<const __m256i*>(a + k * 64);
    const auto* pb = reinterpret_cast<const __m256i*>(b + k * 64);
    const __m256i a0 = _mm256_loadu_si256(pa), a1 = _mm256_loadu_si256(pa + 1);
    const __m256i b0 = _mm256_loadu_si256(pb), b1 = _mm256_loadu_si256(pb + 1);
    const __m256i any = _mm256_or_si256(_mm256_xor_si256(a0, b0), _mm256_xor_si256(a1, b1));
    if (_mm256_testz_si256(any, any)) continue;  // equal bytes: the common case, one test per block
    const auto low = static_cast<uint32_t>(
        _mm256_movemask_epi8(_mm256_xor_si256(_mm256_cmpeq_epi8(a0, zero), _mm256_cmpeq_epi8(b0, zero))));
    const auto high = static_cast<uint32_t>(
        _mm256_movemask_epi8(_mm256_xor_si256(_mm256_cmpeq_epi8(a1, zero), _mm256_cmpeq_epi8(b1, zero))));
    const uint64_t bits = static_cast<uint64_t>(high) << 32 | low;
    out_index[count] = static_cast<int32_t>(k);
    out_bits[count] = bits;
    count += bits != 0;
  }
  return count;
}

// Block k = v0:v1 of flip_masks_along_u8: appends its flip bits against the byte before (bit 0 of `carry`: that byte
// is zero) when there are any, and carries its last byte's state on. A function, not a lambda: lambdas do not inherit
// the caller's target attribute.
__attribute__((target("avx2"))) inline void along_block(int64_t k, __m256i v0, __m256i v1, uint64_t& carry,
                                                        int32_t* out_index, uint64_t* out_bits, int64_t& count) {
  const __m256i zero = _mm256_setzero_si256();
  const auto low = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v0, zero)));
  const auto high = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v1, zero)));
  const uint64_t zeros = static_cast<uint64_t>(high) << 32 | low;
  const uint64_t bits = zeros ^ (zeros << 1 | carry);
  carry = zeros >> 63;
  out_index[count] = static_cast<int32_t>(k);
  out_bits[count] = bits;
  count += bits != 0;
}

// Each byte is loaded once and compared with zero; the neighbour before each byte comes from shifting the 64-bit
// zero mask by one, carried across blocks, so no load straddles two cache lines. Masks are mostly long stretches of
// one state, so two blocks at a time are first tested for being uniform and equal to the byte before them (an OR or
// a MIN of four loads and one VPTEST): that makes the common case as cheap as a plain read of the memory.
__attribute__((target("avx2"))) int64_t flip_masks_along_u8_avx2(const unsigned char* data, int64_t nblocks,
                                                                  bool has_before, int32_t* out_index,
                                                                  uint64_t* out_bits) {
  const __m256i zero = _mm256_setzero_si256();
  int64_t count = 0;
  uint64_t carry = has_before ? static_cast<uint64_t>(data[-1] == 0) : static_cast<uint64_t>(nblocks > 0 && data[0] == 0);
  int64_t k = 0;
  for (; k + 2 <= nblocks; k += 2) {
    const auto* p = reinterpret_cast<const __m256i*>(data + k * 64);
    const __m256i v0 = _mm256_loadu_si256(p), v1 = _mm256_loadu_si256(p + 1);
    const __m256i v2 = _mm256_loadu_si256(p + 2), v3 = _mm256_loadu_si256(p + 3);
    if (carry) {  // the byte before is zero: skip 128 zero bytes
      const __m256i any = _mm256_or_si256(_mm256_or_si256(v0, v1), _mm256_or_si256(v2, v3));
      if (_mm256_testz_si256(any, any)) continue;
    } else {  // the byte before is nonzero: skip 128 nonzero bytes
      const __m256i least = _mm256_min_epu8(_mm256_min_epu8(v0, v1), _mm256_min_epu8(v2, v3));
      const __m256i is_zero = _mm256_cmpeq_epi8(least, zero);
      if (_mm256_testz_si256(is_zero, is_zero)) continue;
    }
    along_block(k, v0, v1, carry, out_index, out_bits, count);
    along_block(k + 1, v2, v3, carry, out_index, out_bits, count);
  }
  if (k < nblocks) {
    const auto* p = reinterpret_cast<const __m256i*>(data + k * 64);
    along_block(k, _mm256_loadu_si256(p), _mm256_loadu_si256(p + 1), carry, out_index, out_bits, count);
  }
  return count;
}

template <int kElem>
__attribute__((target("avx2"))) inline __m256i broadcast_element(const unsigned char* p) {
  if constexpr (kElem == 1) {
    return _mm256_set1_epi8(static_cast<char>(*p));
  } else if constexpr (kElem == 2) {
    int16_t v;
    std::memcpy(&v, p, 2);
    return _mm256_set1_epi16(v);
  } else if constexpr (kElem == 4) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
  } else {
    long long v;
    std::memcpy(&v, p, 8);
    return _mm256_set1_epi64x(v);
  }
}

// Each byte loaded once, at offsets that are multiples of 32 from the array start: comparing data with itself
// shifted by one element instead loads every byte twice and splits every other 32-byte load across two cache lines.
template <int kElem>
__attribute__((target("avx2"))) int64_t nonuniform_blocks_avx2_t(const unsigned char* data, int64_t nblocks,
                                                                  bool has_before, int32_t* out) {
  int64_t count = 0;
  for (int64_t k = 0; k < nblocks; ++k) {
    const unsigned char* block = data + k * 64;
    const __m256i pattern = broadcast_element<kElem>(k > 0 || has_before ? block - kElem : block);
    const auto* p = reinterpret_cast<const __m256i*>(block);
    const __m256i low = _mm256_cmpeq_epi8(_mm256_loadu_si256(p), pattern);
    const __m256i high = _mm256_cmpeq_epi8(_mm256_loadu_si256(p + 1), pattern);
    out[count] = static_cast<int32_t>(k);
    count += _mm256_movemask_epi8(_mm256_and_si256(low, high)) != -1;
  }
  return count;
}

__attribute__((target("avx2"))) int64_t nonuniform_blocks_avx2(const unsigned char* data, int64_t nblocks,
                                                                int elem_size, bool has_before, int32_t* out) {
  switch (elem_size) {
    case 1: return nonuniform_blocks_avx2_t<1>(data, nblocks, has_before, out);
    case 2: return nonuniform_blocks_avx2_t<2>(data, nblocks, has_before, out);
    case 4: return nonuniform_blocks_avx2_t<4>(data, nblocks, has_before, out);
    default: return nonuniform_blocks_avx2_t<8>(data, nblocks, has_before, out);
  }
}

#endif

// Both kernels and their name, chosen together, once. STEELFAST_DISABLE_AVX2=1 forces the portable ones (the tests
// run them that way too), like numpy's NPY_DISABLE_CPU_FEATURES.
struct Kernels {
  DifferingBlocks differing;
  NonuniformBlocks nonuniform;
  FlipMasksU8 flip_masks;
  FlipMasksAlongU8 flip_masks_along;
  const char* name;
};

Kernels choose() {
#ifdef STEELFAST_X86_DISPATCH
  const char* off = std::getenv("STEELFAST_DISABLE_AVX2");
  const bool disabled = off != nullptr && off[0] != '\0' && off[0] != '0';
  __builtin_cpu_init();  // may run from a static initializer, before libgcc's own
  if (!disabled && __builtin_cpu_supports("avx2")) return {differing_blocks_avx2, nonuniform_blocks_avx2, flip_masks_u8_avx2,
                                                                  flip_masks_along_u8_avx2, "avx2"};
#endif
  return {differing_blocks_portable, nonuniform_blocks_portable, flip_masks_u8_portable,
          flip_masks_along_u8_portable, "portable"};
}

const Kernels& kernels() {
  static const Kernels chosen = choose();  // thread-safe one-time initialisation (C++11 magic static)
  return chosen;
}

}  // namespace

int64_t nonuniform_blocks(const unsigned char* data, int64_t nblocks, int elem_size, bool has_before, int32_t* out) {
  return kernels().nonuniform(data, nblocks, elem_size, has_before, out);
}

int64_t differing_blocks(const unsigned char* a, const unsigned char* b, int64_t nblocks, int32_t* out) {
  return kernels().differing(a, b, nblocks, out);
}

int64_t flip_masks_u8(const unsigned char* a, const unsigned char* b, int64_t nblocks, int32_t* out_index,
                      uint64_t* out_bits) {
  return kernels().flip_masks(a, b, nblocks, out_index, out_bits);
}

int64_t flip_masks_along_u8(const unsigned char* data, int64_t nblocks, bool has_before, int32_t* out_index,
                            uint64_t* out_bits) {
  return kernels().flip_masks_along(data, nblocks, has_before, out_index, out_bits);
}

}  // namespace detail

const char* simd_kernels() { return detail::kernels().name; }

}  // namespace steelfast
