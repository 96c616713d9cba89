#pragma once
// strerror for the negative errno values sd-bus and sd-event return, and for plain errno: the
// one spelling of a system error in dpsd's messages, lower-case as it follows a colon
// ("cannot connect to …: connection refused").
#include <cctype>
#include <cstring>
#include <string>

namespace dpsd::core {

inline std::string errno_text(int error) {
  std::string text = std::strerror(error < 0 ? -error : error);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

}  // namespace dpsd::core
