#pragma once
// Durations as the configuration spells them: "250ms", "30s", "5min", "1h 30min", "7d", or a
// bare number of seconds. Pure text in, milliseconds out; the config schema decides which
// values a key accepts (zero, a minimum, whole seconds).
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dpsd::core {

// 2^52 ms, about 142,000 years: far beyond any sensible delay, and keeps every sum exact.
constexpr std::int64_t kMaxDurationMs = std::int64_t{1} << 52;

// Units: ms/msec, s/sec, m/min, h/hr, d (lower case only). Parts may be separated by spaces
// or tabs and add up ("1h30min"). A number without a unit counts seconds, and only on its own:
// "1h 30" is ambiguous. Every part and the sum are bounded by kMaxDurationMs, so no input
// overflows; anything else (signs, fractions, exponents, other whitespace) is nullopt.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

// A non-negative duration in the form parse_duration() reads back, largest unit first:
// 90000ms -> "1min30s", 0 -> "0s". Used in messages ("must not be greater than retry.max (1min)").
std::string format_duration(std::chrono::milliseconds value);

}  // namespace dpsd::core
