#include "io/openssl_error.hpp"

#include <openssl/err.h>

#include <cstring>

namespace dpsd::io {

std::string openssl_reason() {
  const unsigned long code = ERR_peek_error();
  std::string text;
  if (code == 0) {
    text = "unknown OpenSSL error";
  } else if (ERR_SYSTEM_ERROR(code)) {
    // A failed system call (fopen of the bundle, say): the reason field holds errno, and
    // OpenSSL 3 has no string for it.
    text = std::strerror(ERR_GET_REASON(code));
  } else if (const char* reason = ERR_reason_error_string(code)) {
    text = reason;
  } else {
    text = "OpenSSL error " + std::to_string(code);
  }
  ERR_clear_error();
  return text;
}

}  // namespace dpsd::io
