// Memory for large outputs, and process allocator tuning for glibc.
//
// glibc returns large freed blocks (above a dynamic mmap threshold, at most 32 MiB) to the kernel, so the next large
// allocation of the same size page-faults again and the kernel zeroes every page before the caller overwrites it:
// decoding 256 masks into a fresh 105 MB array spends more time there than decoding. Two remedies:
// - a cache of large output buffers: a freed buffer is kept (its pages marked MADV_FREE, so the kernel may still
//   reclaim them under memory pressure) and handed to the next request of the same size, the way jemalloc retains
//   pages and PyTorch's CUDA allocator caches blocks;
// - retain_freed_memory: serve every block from the heap (no mmap) and raise glibc's trim threshold, process-wide.
#pragma once

#include <cstddef>
#include <cstdint>

namespace steelfast {

// Buffers smaller than this come from the ordinary allocator: glibc already reuses them.
constexpr size_t kMinCachedBuffer = size_t{2} << 20;

struct CachedBuffer {
  uint8_t* data;
  size_t bytes;  // what was asked for; pass it back to release_buffer
  bool zeroed;   // true for fresh pages (all zero); false for a reused buffer holding old contents
};

// A buffer of at least `bytes` (> 0) bytes: a cached one of the same size class (whole 2 MiB pages) if there is one,
// otherwise fresh zeroed pages. Throws std::bad_alloc when the system has no memory. Thread-safe.
CachedBuffer acquire_buffer(size_t bytes);

// Returns a buffer from acquire_buffer: kept for reuse while the cache stays within its limit, unmapped otherwise.
// Thread-safe; never throws, so it may run inside a foreign object's destructor.
void release_buffer(uint8_t* data, size_t bytes) noexcept;

// acquire_buffer's result in a heap-allocated owner, for an object whose destructor takes one void* (a Python
// capsule): release_owned_buffer(owner) gives the buffer back and deletes the owner.
CachedBuffer* acquire_owned_buffer(size_t bytes);
void release_owned_buffer(void* owner) noexcept;

// Sets how many bytes of freed buffers the cache may keep (0 disables it) and drops what exceeds it; returns the
// previous limit.
size_t set_buffer_cache_limit(size_t bytes);

// Bytes of freed buffers the cache holds now.
size_t cached_buffer_bytes();

// Unmaps every cached buffer; returns the bytes released.
size_t release_cached_buffers();

// Sets glibc's M_MMAP_MAX to 0 and M_TRIM_THRESHOLD to `trim_threshold` bytes; false where that is not possible.
bool retain_freed_memory(int64_t trim_threshold);

}  // namespace steelfast
