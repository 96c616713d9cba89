#include "core/sas_token.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <memory>
#include <utility>

namespace dpsd::core {
namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::size_t kSha256Size = 32;

// Maps a base64 character to its 6-bit value, or -1. A table rather than EVP_DecodeBlock because
// EVP_DecodeBlock skips whitespace and hides how much of the output is padding.
constexpr std::array<int, 256> make_decode_table() {
  std::array<int, 256> table{};
  table.fill(-1);
  for (std::size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int>(i);
  }
  return table;
}
constexpr std::array<int, 256> kDecodeTable = make_decode_table();

bool is_kept(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

// Key bytes are wiped when the last copy of a Signer goes away, so a key read from a file does
// not linger in freed heap memory.
struct WipedKey {
  Bytes bytes;
  explicit WipedKey(Bytes b) : bytes(std::move(b)) {}
  WipedKey(const WipedKey&) = delete;
  WipedKey& operator=(const WipedKey&) = delete;
  ~WipedKey() {
    if (!bytes.empty()) OPENSSL_cleanse(bytes.data(), bytes.size());
  }
};

}  // namespace

std::string base64_encode(std::span<const std::uint8_t> data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    const std::uint32_t n = (std::uint32_t{data[i]} << 16) | (std::uint32_t{data[i + 1]} << 8) |
                            std::uint32_t{data[i + 2]};
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += kAlphabet[n & 63];
  }
  const std::size_t rest = data.size() - i;
  if (rest == 1) {
    const std::uint32_t n = std::uint32_t{data[i]} << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    const std::uint32_t n = (std::uint32_t{data[i]} << 16) | (std::uint32_t{data[i + 1]} << 8);
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += kAlphabet[(n >> 6) & 63];
    out += '=';
  }
  return out;
}

std::optional<Bytes> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  // Up to two trailing '='; any other '=' is left in the body and rejected by the table.
  std::size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') {
    ++padding;
  }
  const std::string_view body = text.substr(0, text.size() - padding);

  Bytes out;
  out.reserve(text.size() / 4 * 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char ch : body) {
    const int v = kDecodeTable[static_cast<unsigned char>(ch)];
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>((acc >> bits) & 0xFF));
    }
  }
  // Leftover bits are padding; they are not required to be zero (Python and OpenSSL accept
  // non-canonical encodings too, and a key pasted from a portal must not be refused for it).
  return out;
}

std::string url_encode_lower(std::string_view text) {
  static constexpr std::string_view kHex = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (is_kept(c)) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0x0F];
    }
  }
  return out;
}

Bytes hmac_sha256(std::span<const std::uint8_t> key, std::string_view message) {
  // OpenSSL treats a null key pointer as "reuse the previous key"; give it a real address for an
  // empty key so the result is the well-defined HMAC with an empty key.
  static const std::uint8_t kEmpty = 0;
  const void* key_ptr = key.empty() ? &kEmpty : key.data();
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key_ptr, static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), out.data(),
           &len) == nullptr) {
    return {};
  }
  out.resize(len);
  return out;
}

Expected<std::string> derive_device_key(std::string_view group_key_base64,
                                        std::string_view registration_id) {
  if (registration_id.empty()) return Error{"registration id is empty"};
  auto group_key = base64_decode(group_key_base64);
  if (!group_key) return Error{"group key is not valid base64"};
  if (group_key->empty()) return Error{"group key is empty"};
  const Bytes derived = hmac_sha256(*group_key, registration_id);
  OPENSSL_cleanse(group_key->data(), group_key->size());
  if (derived.size() != kSha256Size) return Error{"HMAC-SHA256 failed"};
  return base64_encode(derived);
}

std::string sas_resource(std::string_view id_scope, std::string_view registration_id) {
  return url_encode_lower(id_scope) + "%2fregistrations%2f" + url_encode_lower(registration_id);
}

std::string sas_string_to_sign(std::string_view encoded_resource, std::int64_t expiry_unix) {
  std::string out(encoded_resource);
  out += '\n';
  out += std::to_string(expiry_unix);
  return out;
}

Expected<Signer> make_memory_signer(std::string_view device_key_base64) {
  auto key = base64_decode(device_key_base64);
  if (!key) return Error{"device key is not valid base64"};
  if (key->empty()) return Error{"device key is empty"};
  auto shared = std::make_shared<const WipedKey>(std::move(*key));
  return Signer{[shared](std::string_view string_to_sign) -> Expected<Bytes> {
    Bytes sig = hmac_sha256(shared->bytes, string_to_sign);
    if (sig.size() != kSha256Size) return Error{"HMAC-SHA256 failed"};
    return sig;
  }};
}

Expected<std::string> make_sas_token(const Signer& signer, std::string_view id_scope,
                                     std::string_view registration_id, std::int64_t expiry_unix) {
  if (id_scope.empty()) return Error{"id scope is empty"};
  if (registration_id.empty()) return Error{"registration id is empty"};
  if (expiry_unix < 0) return Error{"SAS expiry is negative"};
  if (!signer) return Error{"no signer"};
  const std::string resource = sas_resource(id_scope, registration_id);
  const std::string expiry = std::to_string(expiry_unix);
  Expected<Bytes> sig = signer(sas_string_to_sign(resource, expiry_unix));
  if (!sig) return Error{"signing the SAS token failed: " + sig.error()};
  // A signer backed by a token could hand back anything; a wrong length means a wrong mechanism.
  if (sig->size() != kSha256Size) {
    return Error{"signer returned " + std::to_string(sig->size()) + " bytes, expected " +
                 std::to_string(kSha256Size)};
  }
  return "SharedAccessSignature sr=" + resource + "&sig=" + url_encode_lower(base64_encode(*sig)) +
         "&se=" + expiry + "&skn=registration";
}

}  // namespace dpsd::core
