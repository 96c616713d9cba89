#pragma once
// "sha256:" and a digest in lower-case hex: how the state file and D-Bus spell a fingerprint.
#include <cstddef>
#include <string>

namespace dpsd::core {

inline std::string sha256_label(const unsigned char* digest, std::size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (std::size_t i = 0; i < size; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 0x0f];
  }
  return out;
}

}  // namespace dpsd::core
