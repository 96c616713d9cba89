#pragma once
// The configuration schema: every table and key dpsd knows, each with its type, its default
// (as TOML), a one-line description, and how a value is checked and stored into Config. The
// shipped etc/dpsd/config.toml and the dpsd.toml(5) man page document exactly these keys (a unit
// test holds them to it). Unknown names are errors, with the nearest known name as a hint.
#include <toml++/toml.h>

#include <span>
#include <string>
#include <string_view>

#include "core/config.hpp"
#include "core/expected.hpp"

namespace dpsd::core::config_schema {

enum class ValueType {
  String,          // free text with its own rule (id scope, registration id)
  Choice,          // one of a few words ("never", "always", "when-stale")
  Endpoint,        // "host", "host:port", "[v6]:port"
  Port,            // an integer 1-65535
  Duration,        // seconds, or "250ms", "5min", "1h 30min" (core/duration.hpp)
  Path,            // an absolute path; "" unsets an optional one
  Location,        // where a secret or certificate is: file:, credential: or pkcs11: (key_uri.hpp)
  CredentialName,  // a systemd credential's name
  Url,             // an HTTP proxy URL
  Refused,         // known only to say why it is refused (a PIN in clear)
};

// Checks one value and stores it into the config; the error is phrased to follow "key: ".
using Apply = Status (*)(Config&, const toml::node&);

struct Key {
  std::string_view table;  // "provisioning.attestation": every key sits in a table
  std::string_view name;   // "method"
  ValueType type;
  std::string_view default_value;  // the default as TOML ("\"10s\"", "443"); "" when there is
                                   // none (required, or unset unless configured)
  std::string_view doc;            // one line: what the key decides
  Apply apply;

  std::string dotted() const { return std::string(table) + "." + std::string(name); }
};

// Every key. The order is the hints' tie-break (the first of equally near names is offered).
std::span<const Key> keys();
// Every table, dotted ("provisioning.attestation").
std::span<const std::string_view> tables();
bool is_table(std::string_view dotted);
// The key `name` directly inside `table`, or nullptr.
const Key* find_key(std::string_view table, std::string_view name);

// The keys an operator must set, with what to put there: the shipped config leaves them
// commented out, so these are the lines --check-config prints on a fresh install.
struct Required {
  std::string_view key;
  std::string_view reason;
};
std::span<const Required> required_keys();

// "unknown key", with the nearest known name when one is close: first in the same table, then
// anywhere else (a key put under the wrong table header is a common slip). `table` is "" for
// the root.
std::string unknown_key_reason(std::string_view table, std::string_view name);

}  // namespace dpsd::core::config_schema
