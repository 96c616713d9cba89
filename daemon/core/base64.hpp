#pragma once
// Base64 (RFC 4648, standard alphabet, padded): the one codec. SAS keys and signatures, the
// WebSocket handshake key and accept value, and the proxy's Basic credentials all use it.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dpsd::core {

using Bytes = std::vector<std::uint8_t>;

std::string base64_encode(std::span<const std::uint8_t> data);
inline std::string base64_encode(std::string_view text) {
  return base64_encode(
      std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));  // NOLINT
}
// Whitespace is not accepted. nullopt when malformed.
std::optional<Bytes> base64_decode(std::string_view text);

}  // namespace dpsd::core
