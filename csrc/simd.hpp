// Block comparison with the widest vectors the CPU has, chosen at run time.
//
// The wheel is built for baseline x86-64 (SSE2), where comparing two 64-byte blocks costs a horizontal reduction
// per block; with AVX2 it is two 32-byte XORs and one VPTEST. The AVX2 variant is compiled with a target attribute
// and picked once, after asking the CPU, so the same binary runs everywhere. STEELFAST_DISABLE_AVX2=1 in the
// environment forces the portable variants.
#pragma once

#include <cstdint>

// Where the AVX2 variants exist: x86 with GCC or Clang (target attributes and __builtin_cpu_supports). Files that
// define AVX2 variants include <immintrin.h> under it.
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define STEELFAST_X86_DISPATCH 1
#endif

namespace steelfast {
namespace detail {

// Writes to `out` the index of every 64-byte block k in [0, nblocks) where a and b differ, in increasing order, and
// returns how many there are. `out` must have room for nblocks entries.
int64_t differing_blocks(const unsigned char* a, const unsigned char* b, int64_t nblocks, int32_t* out);

// For 1-byte elements: for every 64-byte block k in [0, nblocks) where the nonzero-ness of a and b differs somewhere,
// writes k to out_index and the mask of those bytes (bit j = byte j of the block) to out_bits, in increasing k, and
// returns how many blocks there are. Both outputs must have room for nblocks entries.
int64_t flip_masks_u8(const unsigned char* a, const unsigned char* b, int64_t nblocks, int32_t* out_index,
                      uint64_t* out_bits);

// For 1-byte elements along one array: for every 64-byte block k in [0, nblocks) holding a j with
// (data[64k + j] != 0) != (data[64k + j - 1] != 0), writes k to out_index and the mask of those j to out_bits, in
// increasing k; returns how many. data[-1] is read only when `has_before`; without it bit 0 of block 0 stays clear.
int64_t flip_masks_along_u8(const unsigned char* data, int64_t nblocks, bool has_before, int32_t* out_index,
                            uint64_t* out_bits);

// Writes to `out` the index of every 64-byte block k in [0, nblocks) of `data` whose bytes are not all copies of the
// `elem_size`-byte element just before the block, in increasing order, and returns how many there are. Only such
// blocks can hold a change of value along `data`. For k = 0 that element is data[-elem_size..-1] when `has_before`
// (the caller's buffer continues before `data`), else the block's own first element. elem_size is 1, 2, 4 or 8;
// `out` must have room for nblocks entries.
int64_t nonuniform_blocks(const unsigned char* data, int64_t nblocks, int elem_size, bool has_before, int32_t* out);

}  // namespace detail

// "avx2" or "portable": the block kernels this process uses.
const char* simd_kernels();

}  // namespace steelfast
