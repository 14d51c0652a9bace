#include "mask_writer.hpp"

#include <algorithm>
#include <cstring>

#include "simd.hpp"

#ifdef STEELFAST_X86_DISPATCH
#include <immintrin.h>
#define STEELFAST_AVX2 __attribute__((target("avx2")))
#endif

namespace steelfast {
namespace {

// Without AVX2: clear the mask, then paint the runs (memset picks the best stores for the clear).
void write_runs_plain(const Run* runs, size_t count, uint8_t* out, int64_t total) {
  std::memset(out, 0, static_cast<size_t>(total));
  for (size_t i = 0; i < count; ++i) std::memset(out + runs[i].start, 1, static_cast<size_t>(runs[i].length));
}

#ifdef STEELFAST_X86_DISPATCH
constexpr int64_t kBlock = 32;

// Writes a mask front to back. Whole aligned blocks of one value are streamed; a block that a run boundary crosses
// is assembled in `staged_` and streamed once complete. Bytes before the first aligned block and after the last whole
// one are plain memsets.
class StreamingWriter {
 public:
  STEELFAST_AVX2 StreamingWriter(uint8_t* out, int64_t total)
      : out_(out),
        total_(total),
        head_(std::min<int64_t>(total,
                                static_cast<int64_t>((kBlock - reinterpret_cast<uintptr_t>(out) % kBlock) % kBlock))),
        body_end_(head_ + (total - head_) / kBlock * kBlock),
        staged_(_mm256_setzero_si256()) {}

  // Writes `value` over [pos_, to).
  STEELFAST_AVX2 void fill_until(int64_t to, unsigned char value) {
    while (pos_ < to) {
      if (pos_ < head_ || pos_ >= body_end_) {
        const int64_t stop = std::min(to, pos_ < head_ ? head_ : total_);
        std::memset(out_ + pos_, value, static_cast<size_t>(stop - pos_));
        pos_ = stop;
        continue;
      }
      const int64_t offset = (pos_ - head_) % kBlock;
      if (offset != 0 || to - pos_ < kBlock) {
        const int64_t block_begin = pos_ - offset;
        const int64_t stop = std::min(to, block_begin + kBlock);
        stage(offset, stop - block_begin, value);
        pos_ = stop;
        if (pos_ == block_begin + kBlock) _mm256_stream_si256(reinterpret_cast<__m256i*>(out_ + block_begin), staged_);
        continue;
      }
      const int64_t stop = pos_ + (std::min(to, body_end_) - pos_) / kBlock * kBlock;
      const __m256i splat = _mm256_set1_epi8(static_cast<char>(value));
      for (; pos_ < stop; pos_ += kBlock) _mm256_stream_si256(reinterpret_cast<__m256i*>(out_ + pos_), splat);
    }
  }

 private:
  // Lanes [from, to) of the staged block take `value`: two signed byte compares against the lane numbers
  // (0 <= from < to <= 32, so from - 1 and to fit a signed byte).
  STEELFAST_AVX2 void stage(int64_t from, int64_t to, unsigned char value) {
    const __m256i lanes = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
                                           21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
    const __m256i after_from = _mm256_cmpgt_epi8(lanes, _mm256_set1_epi8(static_cast<char>(from - 1)));
    const __m256i before_to = _mm256_cmpgt_epi8(_mm256_set1_epi8(static_cast<char>(to)), lanes);
    staged_ = _mm256_blendv_epi8(staged_, _mm256_set1_epi8(static_cast<char>(value)),
                                 _mm256_and_si256(after_from, before_to));
  }

  uint8_t* out_;
  int64_t total_;
  int64_t head_;      // bytes before the first 32-byte aligned address
  int64_t body_end_;  // end of the last whole aligned block
  int64_t pos_ = 0;   // bytes before pos_ are written, or staged
  __m256i staged_;
};

STEELFAST_AVX2 void write_runs_streaming(const Run* runs, size_t count, uint8_t* out, int64_t total) {
  StreamingWriter writer(out, total);
  for (size_t i = 0; i < count; ++i) {
    writer.fill_until(runs[i].start, 0);
    writer.fill_until(runs[i].start + runs[i].length, 1);
  }
  writer.fill_until(total, 0);
  _mm_sfence();  // streaming stores are weakly ordered: complete them before the buffer is handed on
}
#endif

using WriteRuns = void (*)(const Run*, size_t, uint8_t*, int64_t);

WriteRuns choose() {
#ifdef STEELFAST_X86_DISPATCH
  // The same choice as the block kernels (STEELFAST_DISABLE_AVX2 included).
  if (std::strcmp(simd_kernels(), "avx2") == 0) return write_runs_streaming;
#endif
  return write_runs_plain;
}

}  // namespace

void write_runs(const Run* runs, size_t count, uint8_t* out, int64_t total) {
  static const WriteRuns chosen = choose();  // thread-safe one-time initialisation
  chosen(runs, count, out, total);
}

}  // namespace steelfast
