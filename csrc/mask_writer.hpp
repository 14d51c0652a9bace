// Writing whole decoded masks into memory that holds old contents (a reused output buffer).
//
// Clearing such a buffer and then painting the runs writes the defect bytes twice and reads every line into the
// cache first (a write to a line not in the cache fetches it). Here every byte is written once, with non-temporal
// stores where the CPU has AVX2: 32-byte blocks of one value go straight to memory, and a block that a run boundary
// crosses is assembled in a register first. Decoding 256 real masks into a reused 105 MB buffer takes about as long
// as streaming zeros over it plus parsing the texts.
#pragma once

#include <cstddef>
#include <cstdint>

#include "rle.hpp"

namespace steelfast {

// Sets out[p] = 1 for the pixels of `runs` and 0 for every other p in [0, total). Runs must be validated (sorted,
// disjoint, inside the mask). Any alignment of `out`. The stores are complete when this returns.
void write_runs(const Run* runs, size_t count, uint8_t* out, int64_t total);

}  // namespace steelfast
