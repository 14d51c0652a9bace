#include "allocator.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace steelfast {

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
