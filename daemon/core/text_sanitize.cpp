#include "core/text_sanitize.hpp"

#include <array>
#include <cstdint>

namespace dpsd::core {

namespace {

std::string hex_byte(unsigned char byte) {
  static constexpr std::array<char, 16> kHex = {'0', '1', '2', '3', '4', '5', '6', '7',
                                                '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};
  return std::string("\\x") + kHex[byte >> 4U] + kHex[byte & 0x0FU];
}

std::string escape_control(unsigned char byte) {
  switch (byte) {
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    case 0x1B:
      return "\\e";
    default:
      return hex_byte(byte);
  }
}

// Length of the valid UTF-8 sequence starting at text[i] and its code point, or 0 when the
// bytes there are not valid UTF-8 (overlong forms, surrogates and values past U+10FFFF
// included).
std::size_t decode_utf8(std::string_view text, std::size_t i, std::uint32_t& code_point) {
  const auto lead = static_cast<unsigned char>(text[i]);
  std::size_t length = 0;
  std::uint32_t min = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    code_point = lead & 0x1FU;
    min = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    code_point = lead & 0x0FU;
    min = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    code_point = lead & 0x07U;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    const auto next = static_cast<unsigned char>(text[i + k]);
    if ((next & 0xC0U) != 0x80U) return 0;
    code_point = (code_point << 6U) | (next & 0x3FU);
  }
  if (code_point < min || code_point > 0x10FFFF) return 0;
  if (code_point >= 0xD800 && code_point <= 0xDFFF) return 0;
  return length;
}

bool is_display_control(std::uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
         (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

std::string code_point_escape(std::uint32_t cp) {
  static constexpr std::array<char, 16> kHex = {'0', '1', '2', '3', '4', '5', '6', '7',
                                                '8', '9', 'A', 'B', 'C', 'D', 'E', 'F'};
  std::string digits;
  for (int shift = 12; shift >= 0; shift -= 4) {
    digits += kHex[(cp >> static_cast<unsigned>(shift)) & 0x0FU];
  }
  return "\\u{" + digits + "}";
}

}  // namespace

std::string sanitize_text(std::string_view text, std::size_t max_bytes) {
  std::string out;
  out.reserve(text.size() < max_bytes ? text.size() : max_bytes);
  std::size_t i = 0;
  bool truncated = false;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    std::string piece;
    std::size_t consumed = 1;
    if (byte < 0x20 || byte == 0x7F) {
      piece = escape_control(byte);
    } else if (byte == '\\') {
      piece = "\\\\";
    } else if (byte < 0x80) {
      piece.assign(1, static_cast<char>(byte));
    } else {
      std::uint32_t cp = 0;
      const std::size_t length = decode_utf8(text, i, cp);
      if (length == 0) {
        piece = hex_byte(byte);
      } else {
        consumed = length;
        piece =
            is_display_control(cp) ? code_point_escape(cp) : std::string(text.substr(i, length));
      }
    }
    if (out.size() + piece.size() > max_bytes) {
      truncated = true;
      break;
    }
    out += piece;
    i += consumed;
  }
  if (truncated) out += "…[truncated, " + std::to_string(text.size()) + " bytes]";
  return out;
}

}  // namespace dpsd::core
