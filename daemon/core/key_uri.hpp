#pragma once
// Where a secret is, as the configuration names it: "file:///abs/path", "credential:NAME" (a
// systemd credential) or an RFC 7512 "pkcs11:" URI. The syntax lives here, in the pure core, so
// the config check and dpsd::io's loaders agree on it; reading the secret is dpsd::io's job.
// No message echoes the text after the scheme: an operator who pastes the key itself where its
// location belongs must not find it in a log.
#include <map>
#include <string>
#include <string_view>

#include "core/expected.hpp"

namespace dpsd::core {

struct KeyUri {
  enum class Kind { File, Credential };
  Kind kind;
  std::string value;  // File: the absolute path (taken literally, no %-decoding); Credential: NAME
};

// "file:///abs/path" (no host part; the path is used as written, so "%2e%2e" is a file name and
// not ".."; only NUL is refused) or "credential:NAME" (NAME a plain file name: not empty, ".",
// ".." or containing '/' or NUL). Errors are Errc::Invalid and name only the scheme.
Expected<KeyUri> parse_key_uri(std::string_view uri);

// A PKCS#11 URI (RFC 7512), as far as dpsd uses it: path attributes (token, object, id, serial,
// …) select the token and the object; values are %-decoded (so "id" holds raw bytes). The text
// is kept as written because libengine-pkcs11-openssl parses it again. "pin-value" and
// "pin-source" are refused: the PIN comes from [pkcs11] pin_file or pin_credential, and the
// message never echoes what followed "pin-value=".
struct Pkcs11Uri {
  std::string text;
  std::map<std::string, std::string> path;
  std::map<std::string, std::string> query;
};
bool is_pkcs11_uri(std::string_view uri);
Expected<Pkcs11Uri> parse_pkcs11_uri(std::string_view uri);

}  // namespace dpsd::core
