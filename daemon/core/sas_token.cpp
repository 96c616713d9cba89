#include "core/sas_token.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>
#include <memory>
#include <utility>

namespace dpsd::core {
namespace {

constexpr std::size_t kSha256Size = 32;

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
