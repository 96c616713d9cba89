#include "core/duration.hpp"

#include <array>
#include <cstdint>
#include <utility>

namespace dpsd::core {

using std::chrono::milliseconds;

std::optional<milliseconds> parse_duration(std::string_view text) {
  static constexpr std::array<std::pair<std::string_view, std::int64_t>, 9> kUnits{{
      {"ms", 1},
      {"msec", 1},
      {"s", 1000},
      {"sec", 1000},
      {"m", 60000},
      {"min", 60000},
      {"h", 3600000},
      {"hr", 3600000},
      {"d", 86400000},
  }};
  constexpr std::int64_t kLimit = kMaxDurationMs;
  const auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  const auto is_letter = [](char c) { return c >= 'a' && c <= 'z'; };

  std::size_t i = 0;
  std::int64_t total = 0;
  int components = 0;
  bool bare_number = false;
  for (;;) {
    while (i < text.size() && is_space(text[i])) ++i;
    if (i == text.size()) break;
    if (!is_digit(text[i])) return std::nullopt;
    std::int64_t number = 0;
    while (i < text.size() && is_digit(text[i])) {
      number = number * 10 + (text[i] - '0');
      if (number > kLimit) return std::nullopt;
      ++i;
    }
    while (i < text.size() && is_space(text[i])) ++i;
    const std::size_t unit_start = i;
    while (i < text.size() && is_letter(text[i])) ++i;
    const std::string_view unit = text.substr(unit_start, i - unit_start);
    std::int64_t scale = 0;
    if (unit.empty()) {
      scale = 1000;  // a bare number counts seconds, like the TOML integer form
      bare_number = true;
    } else {
      for (const auto& [name, ms] : kUnits) {
        if (name == unit) scale = ms;
      }
      if (scale == 0) return std::nullopt;
    }
    if (number > kLimit / scale) return std::nullopt;
    total += number * scale;
    if (total > kLimit) return std::nullopt;
    ++components;
  }
  // "1h 30" is ambiguous: a unitless number is only allowed on its own.
  if (components == 0 || (bare_number && components > 1)) return std::nullopt;
  return milliseconds(total);
}

std::string format_duration(milliseconds value) {
  static constexpr std::array<std::pair<std::int64_t, std::string_view>, 5> kUnits{{
      {86400000, "d"},
      {3600000, "h"},
      {60000, "min"},
      {1000, "s"},
      {1, "ms"},
  }};
  std::int64_t left = value.count();
  if (left == 0) return "0s";
  std::string out;
  for (const auto& [size, unit] : kUnits) {
    if (left >= size) {
      out += std::to_string(left / size);
      out += unit;
      left %= size;
    }
  }
  return out;
}

}  // namespace dpsd::core
