// sanitize_text: the one escaper in front of sd_notify, the journal, stderr, D-Bus and dpsctl.
#include <gtest/gtest.h>

#include "core/text_sanitize.hpp"

namespace dpsd::core {
namespace {

TEST(SanitizeText, PlainTextIsUnchanged) {
  EXPECT_EQ(sanitize_text("hub-a.azure-devices.net"), "hub-a.azure-devices.net");
  EXPECT_EQ(sanitize_text("Grüße, 東京"), "Grüße, 東京");
  EXPECT_EQ(sanitize_text(""), "");
}

// issue 10 item 1: "x\nWATCHDOG=trigger\nX=" in a DPS error became three STATUS= assignments.
TEST(SanitizeText, NewlinesCannotStartANewAssignment) {
  const std::string out = sanitize_text("x\nWATCHDOG=trigger\nX=");
  EXPECT_EQ(out, "x\\nWATCHDOG=trigger\\nX=");
  EXPECT_EQ(out.find('\n'), std::string::npos);
}

TEST(SanitizeText, EveryControlByteIsEscaped) {
  for (int byte = 0; byte < 0x20; ++byte) {
    const std::string out = sanitize_text(std::string(1, static_cast<char>(byte)));
    EXPECT_EQ(out.front(), '\\') << byte;
    for (const char c : out) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << byte;
  }
  EXPECT_EQ(sanitize_text("\x7f"), "\\x7f");
  EXPECT_EQ(sanitize_text("\x1b]0;pwned\x07"), "\\e]0;pwned\\x07");
  EXPECT_EQ(sanitize_text(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(sanitize_text("\r\t"), "\\r\\t");
}

TEST(SanitizeText, BackslashIsEscapedSoEscapesAreUnambiguous) {
  EXPECT_EQ(sanitize_text("C:\\n"), "C:\\\\n");
}

TEST(SanitizeText, InvalidUtf8AndC1ControlsAreEscaped) {
  EXPECT_EQ(sanitize_text("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(sanitize_text("\xc0\xaf"), "\\xc0\\xaf");           // overlong '/'
  EXPECT_EQ(sanitize_text("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a UTF-16 surrogate
  EXPECT_EQ(sanitize_text("\xc2\x9b"
                          "31m"),
            "\\u{009B}31m");  // C1 CSI
  EXPECT_EQ(sanitize_text("\xe2\x80\xae"
                          "evil"),
            "\\u{202E}evil");  // right-to-left override
  EXPECT_EQ(sanitize_text("a\xe2\x80\xa8"
                          "b"),
            "a\\u{2028}b");                               // line separator
  EXPECT_EQ(sanitize_text("\xe2\x81\xa6"), "\\u{2066}");  // isolate
  EXPECT_EQ(sanitize_text("\xe4\xb8"), "\\xe4\\xb8");     // truncated sequence
}

TEST(SanitizeText, LongTextIsCutAndSaysHowLongItWas) {
  const std::string out = sanitize_text(std::string(200000, 'a'));
  EXPECT_LT(out.size(), kMaxSanitizedText + 64);
  EXPECT_NE(out.find("[truncated, 200000 bytes]"), std::string::npos);
  // Never inside an escape or a UTF-8 sequence.
  // 101 bytes hold 50 whole "\\n" escapes; the 51st would be cut in half, so it is left out.
  const std::string escapes = sanitize_text(std::string(1000, '\n'), 101);
  EXPECT_EQ(escapes.find("…"), 100U) << escapes;
  const std::string cjk = sanitize_text("東京東京", 7);
  EXPECT_EQ(cjk.substr(0, 6), "東京");
}

}  // namespace
}  // namespace dpsd::core
