#pragma once
// Where the device's symmetric key comes from: a file ("file:///etc/dpsd/keys/device.key") or a
// systemd credential ("credential:NAME", read from $CREDENTIALS_DIRECTORY/NAME). The key is the
// base64 text DPS shows in the portal; surrounding whitespace is trimmed. A key file with any
// permission for others, or group write/execute, is refused; group read is allowed only when the
// file's group is the process's effective or a supplementary group (0640 root:dpsd). The
// message names the path and its mode.
#include <string>
#include <string_view>

#include "core/expected.hpp"

namespace dpsd::io {

// Holds key text and wipes it (OPENSSL_cleanse) when it goes away. Move-only.
class SecretText {
 public:
  SecretText() = default;
  explicit SecretText(std::string text) : text_(std::move(text)) {}
  SecretText(SecretText&& other) noexcept;
  SecretText& operator=(SecretText&& other) noexcept;
  SecretText(const SecretText&) = delete;
  SecretText& operator=(const SecretText&) = delete;
  ~SecretText();
  const std::string& view() const { return text_; }

 private:
  std::string text_;
};

// Checks without reading the key into memory longer than needed: the URI form, existence,
// regular file, mode (see above), and that it is valid base64. Used by --check-config.
Status check_key_source(std::string_view uri);

// Loads the key text. Every error names the file or credential and the cause, never the key:
// "key file /etc/dpsd/keys/device.key has mode 0644; it must not be readable or writable by
// others (chmod o-rwx /etc/dpsd/keys/device.key)", "credential 'dps-key' not found:
// $CREDENTIALS_DIRECTORY is not set (…)", "unsupported URI scheme 'http' (use file:///path or
// credential:NAME)"; callers add the "symmetric_key: " context. The URI syntax is
// core::parse_key_uri(). Key files are opened with O_NOFOLLOW and must be private; credentials are
// not mode-checked (systemd owns them).
Expected<SecretText> load_key(std::string_view uri);

}  // namespace dpsd::io
