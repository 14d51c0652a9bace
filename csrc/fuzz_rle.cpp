// Fuzz driver for the RLE parser, decoder, Dice, encoder and defect records.
//
// Built with STEELFAST_FUZZ=ON (and STEELFAST_SANITIZE=ON so ASan/UBSan catch memory errors). With clang and
// -fsanitize=fuzzer, LLVMFuzzerTestOneInput is driven by libFuzzer; otherwise main() runs a deterministic random
// campaign: mutated valid encodings, random token soup and random masks, and checks the round trip on the masks and
// the records' components against a flood fill.
#include <algorithm>
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

// The records of a random mask of random size (row-major probabilities, optionally channels-last strides) against
// an 8-connected flood fill: same text as encode_probs, same components in the same order, each component's own text
// painting exactly its pixels, boxes, areas and scores. Returns false on a mismatch.
bool check_records(std::mt19937_64& rng) {
  const int64_t h = 1 + static_cast<int64_t>(rng() % 12), w = 1 + static_cast<int64_t>(rng() % 12);
  const int64_t total = h * w, step = 1 + static_cast<int64_t>(rng() % 2);  // step 2: every other element
  const int density = static_cast<int>(rng() % 101);
  std::vector<float> probs(static_cast<size_t>(total * step), -1.0f);
  for (int64_t i = 0; i < total; ++i)
    probs[static_cast<size_t>(i * step)] = static_cast<int>(rng() % 100) < density ? 0.5f + (rng() % 50) / 100.0f
                                                                                   : (rng() % 50) / 100.0f;
  auto at = [&](int64_t y, int64_t x) { return probs[static_cast<size_t>((y * w + x) * step)]; };
  const ProbView view{probs.data(), false, 1, 1, h, w, total * step, total * step, w * step, step};
  const int64_t min_area = rng() % 4 == 0 ? static_cast<int64_t>(rng() % 8) : 0;
  const RecordTable table = encode_probs_records(view, {0.5f}, {0}, {min_area}, 1 + static_cast<int>(rng() % 2));
  if (table.rles.size() != 1 || table.rles[0] != encode_probs(view, {0.5f}, {0}, {min_area}, 1)[0]) return false;
  // Flood fill in column-major order of the first pixel, the order the records promise.
  std::vector<int64_t> label(static_cast<size_t>(total), -1);
  std::vector<std::vector<int64_t>> pixels;  // per component, column-major pixel indices
  int64_t area = 0;
  for (int64_t x = 0; x < w; ++x)
    for (int64_t y = 0; y < h; ++y) {
      if (!(at(y, x) > 0.5f) || label[static_cast<size_t>(y * w + x)] >= 0) continue;
      std::vector<int64_t> stack{y * w + x}, own;
      label[static_cast<size_t>(y * w + x)] = static_cast<int64_t>(pixels.size());
      while (!stack.empty()) {
        const int64_t p = stack.back();
        stack.pop_back();
        own.push_back((p % w) * h + p / w);
        for (int64_t dy = -1; dy <= 1; ++dy)
          for (int64_t dx = -1; dx <= 1; ++dx) {
            const int64_t ny = p / w + dy, nx = p % w + dx;
            if (ny < 0 || ny >= h || nx < 0 || nx >= w || !(at(ny, nx) > 0.5f)) continue;
            int64_t& l = label[static_cast<size_t>(ny * w + nx)];
            if (l < 0) {
              l = static_cast<int64_t>(pixels.size());
              stack.push_back(ny * w + nx);
            }
          }
      }
      area += static_cast<int64_t>(own.size());
      pixels.push_back(std::move(own));
    }
  if (area == 0 || area < min_area) pixels.clear();
  if (table.counts[0] != static_cast<int64_t>(pixels.size()) || table.defect_rles.size() != pixels.size()) return false;
  for (size_t k = 0; k < pixels.size(); ++k) {
    std::vector<int64_t>& own = pixels[k];
    std::sort(own.begin(), own.end());
    std::vector<uint8_t> painted(static_cast<size_t>(total));
    paint_runs(parse_rle(table.defect_rles[k], total), painted.data());
    int64_t left = w, top = h, right = -1, bottom = -1;
    double sum = 0.0;
    float peak = 0.0f;
    for (const int64_t p : own) {
      if (!painted[static_cast<size_t>(p)]) return false;
      const int64_t x = p / h, y = p % h;
      left = std::min(left, x), right = std::max(right, x), top = std::min(top, y), bottom = std::max(bottom, y);
      sum += at(y, x);
      peak = std::max(peak, at(y, x));
    }
    if (std::count(painted.begin(), painted.end(), 1) != static_cast<int64_t>(own.size())) return false;
    const int64_t* box = &table.boxes[5 * k];
    if (box[0] != left || box[1] != top || box[2] != right - left + 1 || box[3] != bottom - top + 1 ||
        box[4] != static_cast<int64_t>(own.size()))
      return false;
    const double mean = sum / static_cast<double>(own.size());
    if (table.scores[2 * k] < mean - 1e-9 || table.scores[2 * k] > mean + 1e-9) return false;
    if (table.scores[2 * k + 1] != static_cast<double>(peak)) return false;
  }
  return true;
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
    if (!check_records(rng)) {
      std::fprintf(stderr, "encode_probs_records differs from the flood fill (iteration %ld)\n", it);
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
