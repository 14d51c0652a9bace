#include "allocator.hpp"

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <new>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace steelfast {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// Mapped size of a request: whole 2 MiB pages, so that buffers of one size class are interchangeable.
size_t size_class(size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage; }

struct Block {
  uint8_t* data;
  size_t mapped;
};

uint8_t* map_zeroed(size_t mapped) {
#if defined(__linux__)
  void* data = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (data == MAP_FAILED) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
  // Transparent huge pages where the mapping is 2 MiB aligned (recent kernels align large anonymous mappings): one
  // fault per 2 MiB instead of 512, as numpy asks for its own large arrays.
  madvise(data, mapped, MADV_HUGEPAGE);
#endif
  return static_cast<uint8_t*>(data);
#else
  void* data = std::calloc(mapped, 1);
  if (data == nullptr) throw std::bad_alloc();
  return static_cast<uint8_t*>(data);
#endif
}

void unmap(const Block& block) noexcept {
#if defined(__linux__)
  munmap(block.data, block.mapped);
#else
  std::free(block.data);
#endif
}

void mark_reclaimable(const Block& block) noexcept {
#if defined(__linux__) && defined(MADV_FREE)
  // The kernel may take these pages back under memory pressure (a later write then faults in a zero page); until
  // then reuse costs no fault. Where MADV_FREE is unsupported the pages simply stay.
  madvise(block.data, block.mapped, MADV_FREE);
#else
  (void)block;
#endif
}

struct Cache {
  std::mutex mutex;
  std::vector<Block> blocks;  // most recently freed last
  size_t held = 0;
  size_t limit = size_t{512} << 20;
};

// Never destroyed: arrays that own cached buffers may be freed during interpreter shutdown, after static destructors.
Cache& cache() {
  static Cache* instance = new Cache();
  return *instance;
}

// Unmaps blocks, oldest first, until at most `keep` bytes are held. Allocates nothing, so it cannot throw.
void trim_locked(Cache& state, size_t keep) noexcept {
  size_t index = 0;
  for (; state.held > keep && index < state.blocks.size(); ++index) {
    state.held -= state.blocks[index].mapped;
    unmap(state.blocks[index]);
  }
  state.blocks.erase(state.blocks.begin(), state.blocks.begin() + static_cast<std::ptrdiff_t>(index));
}

}  // namespace

CachedBuffer acquire_buffer(size_t bytes) {
  if (bytes == 0 || bytes > SIZE_MAX - kHugePage) throw std::bad_alloc();
  const size_t mapped = size_class(bytes);
  Cache& state = cache();
  {
    std::lock_guard<std::mutex> lock(state.mutex);
    for (size_t i = state.blocks.size(); i-- > 0;) {
      if (state.blocks[i].mapped != mapped) continue;
      uint8_t* data = state.blocks[i].data;
      state.held -= mapped;
      state.blocks.erase(state.blocks.begin() + static_cast<std::ptrdiff_t>(i));
      return {data, bytes, false};
    }
  }
  return {map_zeroed(mapped), bytes, true};
}

void release_buffer(uint8_t* data, size_t bytes) noexcept {
  const Block block{data, size_class(bytes)};
  Cache& state = cache();
  std::lock_guard<std::mutex> lock(state.mutex);
  if (block.mapped > state.limit) {
    unmap(block);
    return;
  }
  trim_locked(state, state.limit - block.mapped);
  try {
    state.blocks.push_back(block);
  } catch (...) {  // no memory for the list: give the block back instead of keeping it
    unmap(block);
    return;
  }
  state.held += block.mapped;
  mark_reclaimable(block);
}

CachedBuffer* acquire_owned_buffer(size_t bytes) {
  const CachedBuffer buffer = acquire_buffer(bytes);
  try {
    return new CachedBuffer(buffer);
  } catch (...) {
    release_buffer(buffer.data, buffer.bytes);
    throw;
  }
}

void release_owned_buffer(void* owner) noexcept {
  auto* held = static_cast<CachedBuffer*>(owner);
  release_buffer(held->data, held->bytes);
  delete held;
}

size_t set_buffer_cache_limit(size_t bytes) {
  Cache& state = cache();
  std::lock_guard<std::mutex> lock(state.mutex);
  const size_t previous = state.limit;
  state.limit = bytes;
  trim_locked(state, bytes);
  return previous;
}

size_t cached_buffer_bytes() {
  Cache& state = cache();
  std::lock_guard<std::mutex> lock(state.mutex);
  return state.held;
}

size_t release_cached_buffers() {
  Cache& state = cache();
  std::lock_guard<std::mutex> lock(state.mutex);
  const size_t released = state.held;
  trim_locked(state, 0);
  return released;
}

bool retain_freed_memory(int64_t trim_threshold) {
#if defined(__GLIBC__)
  const bool mmap_ok = mallopt(M_MMAP_MAX, 0) == 1;
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold)) == 1;
  return mmap_ok && trim_ok;
#else
  (void)trim_threshold;
  return false;
#endif
}

}  // namespace steelfast
