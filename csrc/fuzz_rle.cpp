// Fuzz driver for the RLE parser, decoder, Dice and encoder.
//
// Built with STEELFAST_FUZZ=ON (and STEELFAST_SANITIZE=ON so ASan/UBSan catch memory errors). With clang and
// -fsanitize=fuzzer, LLVMFuzzerTestOneInput is driven by libFuzzer; otherwise main() runs a deterministic random
// campaign: mutated valid encodings, random token soup and random masks, and checks the round trip on the masks.
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "metrics.hpp"
#include "postprocess.hpp"
#include "rle.hpp"

using namespace steelfast;

namespace {

constexpr int64_t kHeight = 16, kWidth = 24, kTotal = kHeight * kWidth;

void exercise_text(const std::string& text) {
  std::vector<uint8_t> mask(kTotal);
  try {
    std::vector<Run> runs = parse_rle(text, kTotal);
    paint_runs(runs, mask.data());
    // Decoding over stale bytes, at every alignment, must give the painted mask and touch nothing around it.
    std::vector<uint8_t> around(kTotal + 64, 0xAB);
    const size_t offset = text.size() % 32;
    decode_many({text}, around.data() + offset, kTotal, kTotal, 1, false);
    for (size_t i = 0; i < around.size(); ++i) {
      const bool inside = i >= offset && i < offset + kTotal;
      if (around[i] != (inside ? mask[i - offset] : 0xAB)) std::abort();
    }
    MaskView view{mask.data(), 1, kHeight, kWidth, 1, kHeight};  // Fortran-ordered
    if (encode_mask(view).empty() != runs.empty()) std::abort();
    (void)dice_rle(text, text, kTotal);
  } catch (const RleError&) {
  }
  // Two copies of the text as two masks of kTotal / 2 pixels, into zeroed memory and into stale memory: both must
  // decode alike whenever the text is valid for the smaller mask.
  std::vector<uint8_t> zeroed(kTotal), stale(kTotal, 0xCD);
  bool valid = true;
  try {
    decode_many({text, text}, zeroed.data(), kTotal, kTotal / 2, 2, true);
  } catch (const RleError&) {
    valid = false;
  }
  try {
    decode_many({text, text}, stale.data(), kTotal, kTotal / 2, 2, false);
    if (!valid || zeroed != stale) std::abort();
  } catch (const RleError&) {
    if (valid) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  exercise_text(std::string(reinterpret_cast<const char*>(data), size));
  return 0;
}

#ifndef STEELFAST_LIBFUZZER
int main(int argc, char** argv) {
  const long iterations = argc > 1 ? std::atol(argv[1]) : 200000;
  std::mt19937_64 rng(12345);
  const std::string alphabet = "0123456789 -+\t\nx.e";
  long round_trips = 0;
  for (long it = 0; it < iterations; ++it) {
    // A random mask, its encoding, then a mutation of that encoding.
    std::vector<uint8_t> mask(kTotal);
    const int density = static_cast<int>(rng() % 100);
    for (auto& v : mask) v = static_cast<uint8_t>(static_cast<int>(rng() % 100) < density ? rng() % 3 : 0);
    MaskView view{mask.data(), 1, kHeight, kWidth, kWidth, 1};
    std::string text = encode_mask(view);
    std::vector<uint8_t> back(kTotal);
    paint_runs(parse_rle(text, kTotal), back.data());  // Fortran order: pixel (y, x) at x * kHeight + y
    for (int64_t i = 0; i < kTotal; ++i)
      if ((mask[(i % kHeight) * kWidth + i / kHeight] != 0) != (back[i] != 0)) {
        std::fprintf(stderr, "round trip mismatch at %ld\n", static_cast<long>(i));
        return 1;
      }
    ++round_trips;
    std::vector<float> probs(kTotal);
    for (int64_t i = 0; i < kTotal; ++i) probs[i] = mask[i] ? 0.9f : 0.1f;
    ProbView pv{probs.data(), false, 1, 1, kHeight, kWidth, kTotal, kTotal, kWidth, 1};
    if (encode_probs(pv, {0.5f}, {0}, {0}, 1)[0] != text) {
      std::fprintf(stderr, "encode_probs differs from encode_mask\n");
      return 1;
    }
    std::string mutated = text;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = mutated.empty() ? 0 : rng() % (mutated.size() + 1);
      switch (rng() % 3) {
        case 0: mutated.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
        case 1: if (pos < mutated.size()) mutated.erase(pos, 1); break;
        default: if (pos < mutated.size()) mutated[pos] = alphabet[rng() % alphabet.size()];
      }
    }
    exercise_text(mutated);
    std::string soup;
    const size_t len = rng() % 64;
    for (size_t i = 0; i < len; ++i) soup += alphabet[rng() % alphabet.size()];
    exercise_text(soup);
    exercise_text(std::to_string(rng()) + " " + std::to_string(rng()));
  }
  std::printf("fuzz_rle: %ld iterations, %ld round trips, no crash\n", iterations, round_trips);
  return 0;
}
#endif
