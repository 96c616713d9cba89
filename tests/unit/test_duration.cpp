// parse_duration() and format_duration(): the forms the config accepts, and junk and overflow
// that must be refused rather than wrapped or truncated.
#include <gtest/gtest.h>

#include <string>

#include "core/duration.hpp"

namespace dpsd::core {
namespace {

using std::chrono::milliseconds;

TEST(ParseDuration, Forms) {
  EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
  EXPECT_EQ(parse_duration("250msec"), milliseconds(250));
  EXPECT_EQ(parse_duration("2s"), milliseconds(2000));
  EXPECT_EQ(parse_duration("2sec"), milliseconds(2000));
  EXPECT_EQ(parse_duration("5min"), milliseconds(300000));
  EXPECT_EQ(parse_duration("5m"), milliseconds(300000));
  EXPECT_EQ(parse_duration("1h"), milliseconds(3600000));
  EXPECT_EQ(parse_duration("1hr"), milliseconds(3600000));
  EXPECT_EQ(parse_duration("1d"), milliseconds(86400000));
  EXPECT_EQ(parse_duration("7d"), milliseconds(7 * 86400000LL));
  EXPECT_EQ(parse_duration("1h 30min"), milliseconds(5400000));
  EXPECT_EQ(parse_duration("1h30min"), milliseconds(5400000));
  EXPECT_EQ(parse_duration("1d\t1ms"), milliseconds(86400001));
  EXPECT_EQ(parse_duration(" 10 s "), milliseconds(10000));
  EXPECT_EQ(parse_duration("30"), milliseconds(30000));
  EXPECT_EQ(parse_duration("0s"), milliseconds(0));
  // Parts add up, even with the same unit twice.
  EXPECT_EQ(parse_duration("1s 1s"), milliseconds(2000));
}

TEST(ParseDuration, RejectsJunk) {
  for (const char* text : {"",           " ",
                           "\t",         "s",
                           "5x",         "-1s",
                           "+1s",        "1.5s",
                           "1,5s",       "5 minutes",
                           "1h 30",      "30 1h",
                           "5S",         "5Min",
                           "1e3s",       "0x10s",
                           "1h,30min",   "1h-30min",
                           "s5",         "5s.",
                           "5s\n",       "\n5s",
                           "5\xc2\xa0s", "\xef\xbc\x95s",
                           "5s\x01",     "five seconds",
                           "1h 30min 10"}) {
    EXPECT_EQ(parse_duration(text), std::nullopt) << ::testing::PrintToString(std::string(text));
  }
  // An embedded NUL ends nothing early: the rest is still junk.
  EXPECT_EQ(parse_duration(std::string_view("5s\0junk", 7)), std::nullopt);
  EXPECT_EQ(parse_duration(std::string_view("5\0s", 3)), std::nullopt);
}

TEST(ParseDuration, RefusesOverflowInsteadOfWrapping) {
  // Exactly the limit is accepted, one more is not, whatever the unit.
  const std::string limit = std::to_string(kMaxDurationMs);
  EXPECT_EQ(parse_duration(limit + "ms"), milliseconds(kMaxDurationMs));
  EXPECT_EQ(parse_duration(std::to_string(kMaxDurationMs + 1) + "ms"), std::nullopt);
  const std::int64_t max_days = kMaxDurationMs / 86400000;
  EXPECT_EQ(parse_duration(std::to_string(max_days) + "d"), milliseconds(max_days * 86400000));
  EXPECT_EQ(parse_duration(std::to_string(max_days + 1) + "d"), std::nullopt);
  // Each part is in range, the sum is not.
  EXPECT_EQ(parse_duration(std::to_string(max_days) + "d " + std::to_string(max_days) + "d"),
            std::nullopt);
  // Numbers far beyond int64 (which would wrap) and long runs of digits.
  for (const std::string& text :
       {std::string("99999999999999999999s"), std::string("18446744073709551617ms"),
        std::string("9223372036854775807ms"), std::string(10000, '9') + "s"}) {
    EXPECT_EQ(parse_duration(text), std::nullopt) << text.substr(0, 30);
  }
  // Leading zeros are only zeros: they do not count towards the limit.
  EXPECT_EQ(parse_duration(std::string(10000, '0') + "1s"), milliseconds(1000));
  // Many small parts stay bounded too.
  std::string many;
  for (int i = 0; i < 200000; ++i) many += "99999d";
  EXPECT_EQ(parse_duration(many), std::nullopt);
}

TEST(FormatDuration, LargestUnitsFirstAndReadsBack) {
  EXPECT_EQ(format_duration(milliseconds(0)), "0s");
  EXPECT_EQ(format_duration(milliseconds(250)), "250ms");
  EXPECT_EQ(format_duration(milliseconds(2000)), "2s");
  EXPECT_EQ(format_duration(milliseconds(90000)), "1min30s");
  EXPECT_EQ(format_duration(milliseconds(300000)), "5min");
  EXPECT_EQ(format_duration(milliseconds(3600000)), "1h");
  EXPECT_EQ(format_duration(milliseconds(30LL * 86400000)), "30d");
  EXPECT_EQ(format_duration(milliseconds(86400000 + 3600000 + 60000 + 1000 + 1)), "1d1h1min1s1ms");
  for (const std::int64_t ms : {std::int64_t{1}, std::int64_t{999}, std::int64_t{61001},
                                std::int64_t{86399999}, kMaxDurationMs}) {
    EXPECT_EQ(parse_duration(format_duration(milliseconds(ms))), milliseconds(ms)) << ms;
  }
}

}  // namespace
}  // namespace dpsd::core
