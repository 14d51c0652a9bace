// Deterministic parallel loop for the batch kernels.
//
// Work items are claimed from an atomic counter by a fixed number of std::threads; each item writes only its own
// output slot, so the result order never depends on scheduling. An exception thrown by an item is captured and the
// one with the lowest index is rethrown after all threads join, so the error a caller sees is deterministic too.
#pragma once

#include <cstdint>
#include <functional>

namespace steelfast {

// Number of worker threads to use for `requested` (0 = one per hardware thread), never more than `items`.
int resolve_threads(int requested, int64_t items);

// Runs body(i) for i in [0, items) on `threads` threads (0 = all hardware threads).
void parallel_for(int64_t items, int threads, const std::function<void(int64_t)>& body);

}  // namespace steelfast
