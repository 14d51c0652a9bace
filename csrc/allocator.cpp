#include "allocator.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace steelfast {

bool retain_freed_memory(int64_t mmap_threshold, int64_t trim_threshold) {
#if defined(__GLIBC__)
  // mallopt takes int; glibc caps the mmap threshold at 32 MiB on 64-bit (HEAP_MAX / 2), larger values fail.
  const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold)) == 1;
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold)) == 1;
  return mmap_ok && trim_ok;
#else
  (void)mmap_threshold;
  (void)trim_threshold;
  return false;
#endif
}

}  // namespace steelfast
