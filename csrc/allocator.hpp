// Process allocator tuning for glibc.
//
// glibc returns large freed blocks (above a dynamic mmap threshold) to the kernel, so the next large allocation of
// the same size page-faults every 4 KiB page again; on virtual machines a fault costs about a microsecond, which
// dominates mask decoding and batched CPU inference. Serving every block from the heap (no mmap) and raising the trim
// threshold makes glibc keep and reuse those pages, the behaviour of jemalloc's page retention.
#pragma once

#include <cstdint>

namespace steelfast {

// Sets glibc's M_MMAP_MAX to 0 and M_TRIM_THRESHOLD to `trim_threshold` bytes; false where that is not possible.
bool retain_freed_memory(int64_t trim_threshold);

}  // namespace steelfast
