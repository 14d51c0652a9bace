#include "rle.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string>

#include "flips.hpp"
#include "parallel.hpp"

namespace steelfast {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

// Quotes a token for an error message, cut to about 24 bytes on a UTF-8 character boundary: the message becomes a
// Python str, and a cut through a multi-byte character would make decoding it fail instead of showing it.
std::string quote_token(std::string_view token) {
  constexpr size_t kMax = 24;
  size_t cut = std::min(token.size(), kMax);
  if (cut < token.size()) {
    while (cut > 0 && (static_cast<unsigned char>(token[cut]) & 0xC0) == 0x80) --cut;  // 10xxxxxx: continuation
  }
  std::string shown(token.substr(0, cut));
  if (cut < token.size()) shown += "...";
  return "'" + shown + "'";
}

// Rejects the token at `begin` with the message std::from_chars would lead to: "too large" for a number beyond int64
// (signed or not), "not a non-negative integer" for anything else. Only reached on malformed text.
[[noreturn]] void bad_token(std::string_view text, size_t begin, int64_t token_index) {
  size_t end = begin;
  while (end < text.size() && !is_space(text[end])) ++end;
  const std::string_view token = text.substr(begin, end - begin);
  int64_t ignored = 0;
  const bool too_large =
      std::from_chars(token.data(), token.data() + token.size(), ignored).ec == std::errc::result_out_of_range;
  throw RleError("token " + std::to_string(token_index) + " " + quote_token(token) +
                 (too_large ? " is too large" : " is not a non-negative integer"));
}

// Reads the next whitespace-separated token as a non-negative integer; returns false at the end of the text.
// Digits are accumulated in the same pass that finds the token's end: a second pass through std::from_chars cost
// about as much as the rest of decoding.
bool next_number(std::string_view text, size_t& pos, int64_t token_index, int64_t& value) {
  const size_t size = text.size();
  while (pos < size && is_space(text[pos])) ++pos;
  if (pos == size) return false;
  const size_t begin = pos;
  uint64_t v = 0;
  for (; pos < size; ++pos) {
    const unsigned digit = static_cast<unsigned char>(text[pos]) - static_cast<unsigned>('0');
    if (digit > 9) break;
    v = v * 10 + digit;  // wraps only past 19 digits, checked below
  }
  if (pos == begin || (pos < size && !is_space(text[pos]))) bad_token(text, begin, token_index);
  // 18 digits always fit an int64; longer tokens (never in a valid mask) are re-read by from_chars, which
  // reports overflow.
  if (pos - begin > 18) {
    const auto parsed = std::from_chars(text.data() + begin, text.data() + pos, value);
    if (parsed.ec != std::errc()) bad_token(text, begin, token_index);
    return true;
  }
  value = static_cast<int64_t>(v);
  return true;
}

template <class T>
const T* element(const MaskView& m, int64_t y, int64_t x) {
  return static_cast<const T*>(m.data) + y * m.stride_h + x * m.stride_w;
}

template <class T>
bool nonzero(const MaskView& m, int64_t y, int64_t x) {
  return *element<T>(m, y, x) != 0;
}

// Rows contiguous (stride_w == 1): compare each row with the one above it.
template <class T>
std::vector<int64_t> flips_by_rows(const MaskView& m) {
  detail::RowFlips flips(m.height, m.width);
  for (int64_t x = 0; x < m.width; ++x) {
    bool before = x > 0 && nonzero<T>(m, m.height - 1, x - 1);
    if (nonzero<T>(m, 0, x) != before) flips.add(x, 0);
  }
  for (int64_t y = 1; y < m.height; ++y)
    detail::for_each_flip(element<T>(m, y, 0), element<T>(m, y - 1, 0), m.width,
                          [&](int64_t x) { flips.add(x, y); });
  return flips.sorted();
}

// Columns contiguous (stride_h == 1): compare each column with itself shifted by one pixel. When the columns are
// also adjacent (a Fortran-ordered mask) memory order is pixel order, so the whole mask is one shifted comparison.
template <class T>
std::vector<int64_t> flips_by_columns(const MaskView& m) {
  std::vector<int64_t> flips;
  const T* first = element<T>(m, 0, 0);
  if (m.stride_w == m.height) {
    if (*first != 0) flips.push_back(0);
    detail::for_each_flip_along(first, m.height * m.width, [&](int64_t k) { flips.push_back(k); });
    return flips;
  }
  for (int64_t x = 0; x < m.width; ++x) {
    bool before = x > 0 && nonzero<T>(m, m.height - 1, x - 1);
    const int64_t base = x * m.height;
    if (nonzero<T>(m, 0, x) != before) flips.push_back(base);
    const T* column = element<T>(m, 0, x);
    detail::for_each_flip_along(column, m.height, [&](int64_t k) { flips.push_back(base + k); });
  }
  return flips;
}

template <class T>
std::vector<int64_t> flips_strided(const MaskView& m) {
  std::vector<int64_t> flips;
  bool state = false;
  for (int64_t x = 0; x < m.width; ++x)
    for (int64_t y = 0; y < m.height; ++y) {
      bool value = nonzero<T>(m, y, x);
      if (value != state) {
        flips.push_back(x * m.height + y);
        state = value;
      }
    }
  return flips;
}

template <class T>
std::vector<int64_t> flips_typed(const MaskView& m) {
  if (m.height == 0 || m.width == 0) return {};
  if (m.stride_w == 1 && m.height > 1) return flips_by_rows<T>(m);
  if (m.stride_h == 1) return flips_by_columns<T>(m);
  return flips_strided<T>(m);
}

char* write_number(char* out, char* end, int64_t value) {
  const auto result = std::to_chars(out, end, value);
  if (result.ec != std::errc()) throw std::logic_error("format_flips: flips outside [0, total)");
  return result.ptr;
}

// Parses and validates `text` (see parse_rle), calling on_run(Run) for each run as soon as it is validated.
template <class OnRun>
void for_each_run(std::string_view text, int64_t total, OnRun&& on_run) {
  size_t pos = 0;
  int64_t token = 0;
  int64_t previous_end = 0;  // 1-based end (inclusive) of the previous run
  int64_t start = 0;
  while (next_number(text, pos, token, start)) {
    int64_t length = 0;
    if (!next_number(text, pos, token + 1, length))
      throw RleError("odd number of tokens (" + std::to_string(token + 1) +
                     "): RLE needs 'start length' pairs; token " + std::to_string(token) + " has no length");
    // Built only on error: formatting it for every run would dominate the parse.
    auto where = [&] {
      return "run " + std::to_string(token / 2) + " (tokens " + std::to_string(token) + "-" +
             std::to_string(token + 1) + ")";
    };
    if (start < 1) throw RleError(where() + ": start " + std::to_string(start) + " is < 1 (starts are 1-indexed)");
    if (length < 1) throw RleError(where() + ": length " + std::to_string(length) + " is < 1");
    if (start > total || length > total - start + 1)
      throw RleError(where() + ": start " + std::to_string(start) + " length " + std::to_string(length) +
                     " runs past the mask's " + std::to_string(total) + " pixels");
    if (start <= previous_end)
      throw RleError(where() + ": start " + std::to_string(start) + " is not after the previous run's end " +
                     std::to_string(previous_end) + " (starts must increase and runs must not overlap)");
    previous_end = start + length - 1;
    on_run(Run{start - 1, length});
    token += 2;
  }
}

}  // namespace

std::vector<Run> parse_rle(std::string_view text, int64_t total) {
  std::vector<Run> runs;
  for_each_run(text, total, [&](const Run& run) { runs.push_back(run); });
  return runs;
}

int64_t rle_area(std::string_view text, int64_t total) {
  int64_t area = 0;
  for_each_run(text, total, [&](const Run& run) { area += run.length; });
  return area;
}

std::string format_flips(const std::vector<int64_t>& flips, int64_t total) {
  std::string out;
  if (flips.empty()) return out;
  // Every number is at most `total`, so it has at most digits(total) digits; sizing by that instead of the
  // 19 digits of any int64 keeps the zero-filled scratch close to the final length.
  size_t digits = 1;
  for (int64_t rest = total; rest >= 10; rest /= 10) ++digits;
  out.resize((flips.size() + 1) * (digits + 1));
  char* cursor = out.data();
  char* const limit = out.data() + out.size() - 1;  // room for the separator after a number
  for (size_t i = 0; i < flips.size(); i += 2) {
    const int64_t begin = flips[i];
    const int64_t end = i + 1 < flips.size() ? flips[i + 1] : total;
    if (i > 0) *cursor++ = ' ';
    cursor = write_number(cursor, limit, begin + 1);
    *cursor++ = ' ';
    cursor = write_number(cursor, limit, end - begin);
  }
  out.resize(static_cast<size_t>(cursor - out.data()));
  return out;
}

std::vector<int64_t> mask_flips(const MaskView& mask) {
  switch (mask.itemsize) {
    case 1: return flips_typed<uint8_t>(mask);
    case 2: return flips_typed<uint16_t>(mask);
    case 4: return flips_typed<uint32_t>(mask);
    case 8: return flips_typed<uint64_t>(mask);
    default: throw std::invalid_argument("mask itemsize must be 1, 2, 4 or 8, got " + std::to_string(mask.itemsize));
  }
}

std::string encode_mask(const MaskView& mask) { return format_flips(mask_flips(mask), mask.height * mask.width); }

void paint_runs(const std::vector<Run>& runs, uint8_t* out) {
  for (const Run& run : runs) std::memset(out + run.start, 1, static_cast<size_t>(run.length));
}

std::vector<std::string> encode_masks(const MaskView& first, int64_t count, int64_t inner, int64_t stride_outer,
                                      int64_t stride_inner, int threads) {
  std::vector<std::string> out(static_cast<size_t>(count));
  const auto* base = static_cast<const unsigned char*>(first.data);
  parallel_for(count, threads, [&](int64_t i) {
    MaskView view = first;
    const int64_t offset = (i / inner) * stride_outer + (i % inner) * stride_inner;
    view.data = base + offset * first.itemsize;
    out[static_cast<size_t>(i)] = encode_mask(view);
  });
  return out;
}

void decode_many(const std::vector<std::string>& texts, uint8_t* out, int64_t out_size, int64_t total, int threads,
                 bool zeroed) {
  if (out_size != static_cast<int64_t>(texts.size()) * total)
    throw std::invalid_argument("decode_many: output has " + std::to_string(out_size) + " bytes, need " +
                                std::to_string(texts.size()) + " x " + std::to_string(total));
  parallel_for(static_cast<int64_t>(texts.size()), threads, [&](int64_t i) {
    const std::string& text = texts[static_cast<size_t>(i)];
    uint8_t* mask = out + i * total;
    try {
      // Zeroed memory: only the runs are painted, so pages without a run are never touched. Old contents: the gap
      // before each run is cleared as the run is painted, so every byte is written once, front to back.
      int64_t written = 0;
      for_each_run(text, total, [&](const Run& run) {
        if (!zeroed) std::memset(mask + written, 0, static_cast<size_t>(run.start - written));
        std::memset(mask + run.start, 1, static_cast<size_t>(run.length));
        written = run.start + run.length;
      });
      if (!zeroed) std::memset(mask + written, 0, static_cast<size_t>(total - written));
    } catch (const RleError& error) {
      throw RleError("item " + std::to_string(i) + ": " + error.what());
    }
  });
}

std::vector<int64_t> areas_many(const std::vector<std::string>& texts, int64_t total, int threads) {
  std::vector<int64_t> out(texts.size());
  parallel_for(static_cast<int64_t>(texts.size()), threads, [&](int64_t i) {
    try {
      out[static_cast<size_t>(i)] = rle_area(texts[static_cast<size_t>(i)], total);
    } catch (const RleError& error) {
      throw RleError("item " + std::to_string(i) + ": " + error.what());
    }
  });
  return out;
}

}  // namespace steelfast
