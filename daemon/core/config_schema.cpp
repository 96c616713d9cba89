#include "core/config_schema.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <vector>

#include "core/config_values.hpp"
#include "core/http_proxy.hpp"
#include "core/key_uri.hpp"

namespace dpsd::core::config_schema {

namespace {

using std::chrono::milliseconds;
using namespace config_values;  // NOLINT(google-build-using-namespace): the value types

Error must_be_string() {
  return Error{std::string(kMustBeString)};
}

// A key location: file:, credential: or (where a secret may stay in a token) pkcs11:.
Status check_location(std::string_view text, bool pkcs11_allowed) {
  if (pkcs11_allowed && is_pkcs11_uri(text)) {
    auto pkcs11 = parse_pkcs11_uri(text);
    return pkcs11 ? ok_status() : Status(pkcs11.failure());
  }
  auto uri = parse_key_uri(text);
  return uri ? ok_status() : Status(uri.failure());
}

const std::array<std::string_view, 8> kTables{
    "provisioning", "provisioning.attestation", "tls", "network", "retry", "paths", "pkcs11",
    "proxy",
};

const std::array<Key, 29> kKeys{{
    {"provisioning", "reprovision_on_start", ValueType::Choice, "\"never\"",
     "whether a cached assignment is confirmed with DPS at start: never, always, when-stale",
     [](Config& c, const toml::node& n) -> Status {
       const auto text = string_of(n);
       if (!text) return must_be_string();
       if (*text == "never") {
         c.reprovision_on_start = ReprovisionOnStart::Never;
       } else if (*text == "always") {
         c.reprovision_on_start = ReprovisionOnStart::Always;
       } else if (*text == "when-stale") {
         c.reprovision_on_start = ReprovisionOnStart::WhenStale;
       } else {
         return Error{"must be \"never\", \"always\" or \"when-stale\" (got " + quoted(*text) +
                      ")"};
       }
       return ok_status();
     }},
    {"provisioning", "stale_after", ValueType::Duration, "\"30d\"",
     "age after which \"when-stale\" confirms the cached assignment",
     [](Config& c, const toml::node& n) { return set_positive_duration(c.stale_after, n); }},
    {"provisioning", "global_endpoint", ValueType::Endpoint,
     "\"global.azure-devices-provisioning.net\"", "the DPS host, with an optional port",
     [](Config& c, const toml::node& n) -> Status {
       const auto text = string_of(n);
       if (!text) return must_be_string();
       return check_endpoint(*text, c.endpoint_host, c.endpoint_port);
     }},
    {"provisioning", "id_scope", ValueType::String, "", "the ID Scope of the DPS instance",
     [](Config& c, const toml::node& n) -> Status {
       const auto text = string_of(n);
       if (!text) return must_be_string();
       if (auto checked = check_id_scope(*text); !checked) return checked;
       c.id_scope = *text;
       return ok_status();
     }},
    {"provisioning", "registration_id", ValueType::String, "",
     "this device's registration ID in its DPS enrollment",
     [](Config& c, const toml::node& n) -> Status {
       const auto text = string_of(n);
       if (!text) return must_be_string();
       if (auto checked = check_registration_id(*text); !checked) return checked;
       c.registration_id = *text;
       return ok_status();
     }},
    {"provisioning", "payload_file", ValueType::Path, "",
     "a JSON object sent as the registration payload (custom allocation)",
     [](Config& c, const toml::node& n) { return set_optional_path(c.payload_file, n); }},
    {"provisioning.attestation", "method", ValueType::Choice, "\"symmetric_key\"",
     "how the device proves its identity: symmetric_key or x509",
     [](Config& c, const toml::node& n) -> Status {
       const auto text = string_of(n);
       if (!text) return must_be_string();
       if (*text == "symmetric_key") {
         c.method = AttestationMethod::SymmetricKey;
         return ok_status();
       }
       if (*text == "x509") {
         c.method = AttestationMethod::X509;
         return ok_status();
       }
       if (*text == "tpm") return Error{quoted(*text) + " is not supported yet"};
       return Error{"must be \"symmetric_key\" or \"x509\" (got " + quoted(*text) + ")"};
     }},
    {"provisioning.attestation", "enrollment", ValueType::Choice, "\"individual\"",
     "individual, or group (the device key is derived from the group key)",
     [](Config& c, const toml::node& n) -> Status {
       const auto text = string_of(n);
       if (!text) return must_be_string();
       if (*text == "individual") {
         c.enrollment = Enrollment::Individual;
       } else if (*text == "group") {
         c.enrollment = Enrollment::Group;
       } else {
         return Error{"must be \"individual\" or \"group\" (got " + quoted(*text) + ")"};
       }
       return ok_status();
     }},
    {"provisioning.attestation", "symmetric_key", ValueType::Location, "",
     "where the device (or group) key is: file:, credential: or pkcs11:",
     [](Config& c, const toml::node& n) -> Status {
       const auto text = string_of(n);
       if (!text) return must_be_string();
       if (auto checked = check_location(*text, true); !checked) return checked;
       c.symmetric_key_uri = *text;
       return ok_status();
     }},
    {"provisioning.attestation", "sas_token_lifetime", ValueType::Duration, "\"1h\"",
     "lifetime of the SAS token signed for each connection",
     [](Config& c, const toml::node& n) -> Status {
       auto value = duration_of(n);
       if (!value) return value.failure();
       // Shorter than this and the token can expire while the TLS handshake and the
       // registration are still under way on a slow link.
       if (*value < std::chrono::minutes(1)) return Error{"must be at least 1min"};
       if (value->count() % 1000 != 0) return Error{"must be a whole number of seconds"};
       c.sas_token_lifetime = std::chrono::duration_cast<std::chrono::seconds>(*value);
       return ok_status();
     }},
    {"tls", "trust_bundle", ValueType::Path, "",
     "PEM file of CAs trusted for DPS instead of the OS trust store",
     [](Config& c, const toml::node& n) { return set_optional_path(c.trust_bundle, n); }},
    {"network", "connect_timeout", ValueType::Duration, "\"10s\"",
     "wait for the TCP connection to DPS (or the proxy)",
     [](Config& c, const toml::node& n) { return set_positive_duration(c.connect_timeout, n); }},
    {"network", "tls_handshake_timeout", ValueType::Duration, "\"10s\"",
     "wait for the TLS handshake once connected",
     [](Config& c, const toml::node& n) {
       return set_positive_duration(c.tls_handshake_timeout, n);
     }},
    {"network", "response_timeout", ValueType::Duration, "\"30s\"",
     "wait for DPS to answer a request before retrying",
     [](Config& c, const toml::node& n) { return set_positive_duration(c.response_timeout, n); }},
    {"retry", "initial", ValueType::Duration, "\"2s\"", "first backoff delay",
     [](Config& c, const toml::node& n) { return set_positive_duration(c.retry_initial, n); }},
    {"retry", "max", ValueType::Duration, "\"5min\"", "longest backoff delay",
     [](Config& c, const toml::node& n) { return set_positive_duration(c.retry_max, n); }},
    {"retry", "refused", ValueType::Duration, "\"1h\"", "delay after DPS refused the device",
     [](Config& c, const toml::node& n) { return set_positive_duration(c.retry_refused, n); }},
    {"provisioning.attestation", "identity_cert", ValueType::Location, "",
     "x509: the device certificate and its chain, file: only",
     [](Config& c, const toml::node& n) -> Status {
       const auto text = string_of(n);
       if (!text) return must_be_string();
       // A certificate is public, but a credential: or pkcs11: form would suggest otherwise;
       // one plain form keeps the check and the loader simple.
       auto uri = parse_key_uri(*text);
       if (!uri || uri->kind != KeyUri::Kind::File) {
         return Error{"must be file:///absolute/path.pem (the certificate, then its chain)"};
       }
       c.identity_cert_uri = *text;
       return ok_status();
     }},
    {"provisioning.attestation", "identity_pk", ValueType::Location, "",
     "x509: where the certificate's private key is: file:, credential: or pkcs11:",
     [](Config& c, const toml::node& n) -> Status {
       const auto text = string_of(n);
       if (!text) return must_be_string();
       if (is_pkcs11_uri(*text)) {
         if (auto checked = check_location(*text, true); !checked) return checked;
       } else if (auto uri = parse_key_uri(*text); !uri) {
         return Error{uri.error() + " or a pkcs11: URI"};
       }
       c.identity_pk_uri = *text;
       return ok_status();
     }},
    {"pkcs11", "module", ValueType::Path, "", "the PKCS#11 module that serves pkcs11: keys",
     [](Config& c, const toml::node& n) { return set_optional_path(c.pkcs11_module, n); }},
    {"pkcs11", "pin_file", ValueType::Path, "", "a private file holding the token's user PIN",
     [](Config& c, const toml::node& n) { return set_optional_path(c.pkcs11_pin_file, n); }},
    {"pkcs11", "pin_credential", ValueType::CredentialName, "",
     "a systemd credential holding the token's user PIN",
     [](Config& c, const toml::node& n) -> Status {
       const auto text = string_of(n);
       if (!text) return must_be_string();
       if (text->empty()) {
         c.pkcs11_pin_credential.reset();
         return ok_status();
       }
       auto uri = parse_key_uri("credential:" + std::string(*text));
       if (!uri) return Error{"must be a plain credential name (no '/')"};
       c.pkcs11_pin_credential = uri->value;
       return ok_status();
     }},
    // Known only to say why it is refused, instead of a bare "unknown key".
    {"pkcs11", "pin", ValueType::Refused, "", "refused: a PIN never goes in a config file",
     [](Config&, const toml::node&) -> Status {
       return Error{
           "a PIN in clear in the configuration is refused (config files are world-readable); "
           "use pin_file = \"/etc/dpsd/keys/pin\" (mode 0600) or pin_credential = \"NAME\""};
     }},
    {"provisioning", "transport", ValueType::Choice, "\"mqtt\"",
     "mqtt (8883), mqtt-ws (WebSocket, 443) or auto (8883, then 443)",
     [](Config& c, const toml::node& n) -> Status {
       const auto text = string_of(n);
       if (!text) return must_be_string();
       if (*text == "mqtt") {
         c.transport = Transport::Mqtt;
       } else if (*text == "mqtt-ws") {
         c.transport = Transport::MqttWs;
       } else if (*text == "auto") {
         c.transport = Transport::Auto;
       } else {
         return Error{"must be \"mqtt\", \"mqtt-ws\" or \"auto\" (got " + quoted(*text) + ")"};
       }
       return ok_status();
     }},
    {"provisioning", "websocket_port", ValueType::Port, "443",
     "the port of mqtt-ws, and of auto's fallback",
     [](Config& c, const toml::node& n) -> Status {
       const auto* value = n.as_integer();
       if (value == nullptr || value->get() < 1 || value->get() > 65535) {
         return Error{"must be an integer port number (1-65535)"};
       }
       c.websocket_port = static_cast<std::uint16_t>(value->get());
       return ok_status();
     }},
    {"proxy", "url", ValueType::Url, "",
     "an HTTP CONNECT proxy; unset: the environment decides; \"\": none",
     [](Config& c, const toml::node& n) -> Status {
       const auto text = string_of(n);
       if (!text) return must_be_string();
       c.proxy_configured = true;
       if (text->empty()) {  // direct, even when the environment names a proxy
         c.proxy.reset();
         return ok_status();
       }
       // The reason never quotes the URL: it may hold the proxy password.
       auto url = proxy::parse_proxy_url(*text);
       if (!url) return url.failure();
       c.proxy = std::move(*url);
       return ok_status();
     }},
    // Where the proxy's user:password is: a file with a key file's rules, or a systemd
    // credential. io::load_config() reads it into proxy->user/password.
    {"proxy", "credentials", ValueType::Location, "",
     "where the proxy's user:password line is: file: or credential:",
     [](Config& c, const toml::node& n) -> Status {
       const auto text = string_of(n);
       if (!text) return must_be_string();
       if (text->empty()) {
         c.proxy_credentials_uri.reset();
         return ok_status();
       }
       if (auto checked = check_location(*text, false); !checked) return checked;
       c.proxy_credentials_uri = std::string(*text);
       return ok_status();
     }},
    {"paths", "state_dir", ValueType::Path, "\"/var/lib/dpsd\"",
     "where state.json is kept across reboots",
     [](Config& c, const toml::node& n) { return set_path(c.state_dir, n); }},
    {"paths", "runtime_dir", ValueType::Path, "\"/run/dpsd\"",
     "where iothub.env and the private sockets are",
     [](Config& c, const toml::node& n) { return set_path(c.runtime_dir, n); }},
}};

constexpr std::array<Required, 3> kRequired{{
    {"provisioning.id_scope",
     "is required: set it to the ID Scope of your DPS instance (Azure portal, the DPS "
     "resource's Overview page, e.g. \"0ne0012ABCD\")"},
    {"provisioning.registration_id",
     "is required: set it to this device's registration ID in the DPS enrollment (letters, "
     "digits and - . _ :, e.g. \"gateway-0042\")"},
    {"provisioning.attestation.symmetric_key",
     "is required: set it to where the device key is, \"file:///etc/dpsd/keys/device.key\" "
     "or \"credential:NAME\""},
}};

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

struct Name {
  std::string_view own;  // as written inside the table
  std::string shown;     // as a hint shows it: a key's name, or a table's "[header]"
};

// Names directly inside `table` ("" is the root): its keys and its sub-tables.
std::vector<Name> names_in(std::string_view table) {
  std::vector<Name> names;
  for (const auto& key : kKeys) {
    if (key.table == table) names.push_back({key.name, std::string(key.name)});
  }
  for (std::string_view t : kTables) {
    const auto dot = t.rfind('.');
    const std::string_view parent = dot == std::string_view::npos ? "" : t.substr(0, dot);
    const std::string_view own = dot == std::string_view::npos ? t : t.substr(dot + 1);
    if (parent == table) names.push_back({own, "[" + std::string(t) + "]"});
  }
  return names;
}

}  // namespace

std::span<const Key> keys() {
  return kKeys;
}

std::span<const std::string_view> tables() {
  return kTables;
}

bool is_table(std::string_view dotted) {
  return std::find(kTables.begin(), kTables.end(), dotted) != kTables.end();
}

const Key* find_key(std::string_view table, std::string_view name) {
  const auto key = std::find_if(kKeys.begin(), kKeys.end(),
                                [&](const Key& k) { return k.table == table && k.name == name; });
  return key == kKeys.end() ? nullptr : &*key;
}

std::span<const Required> required_keys() {
  return kRequired;
}

std::string unknown_key_reason(std::string_view table, std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  // Within 2 edits, and fewer edits than either name is long: "x" is not a typo of "max".
  constexpr std::size_t kMaxDistance = 2;
  std::size_t best = kMaxDistance + 1;
  std::string suggestion;
  for (const Name& candidate : names_in(table)) {
    const std::size_t d = edit_distance(lower, candidate.own);
    if (d < best && d < candidate.own.size() && d < lower.size()) {
      best = d;
      suggestion = candidate.shown;
    }
  }
  if (suggestion.empty()) {
    std::vector<std::string_view> all(kTables.begin(), kTables.end());
    all.insert(all.begin(), "");
    for (std::string_view other : all) {
      if (other == table) continue;
      for (const Name& candidate : names_in(other)) {
        const std::size_t d = edit_distance(lower, candidate.own);
        if (d < best && d < candidate.own.size() && d < lower.size()) {
          best = d;
          const bool is_table = candidate.shown.front() == '[';
          suggestion = is_table || other.empty()
                           ? candidate.shown
                           : candidate.shown + " in [" + std::string(other) + "]";
        }
      }
    }
  }
  if (suggestion.empty()) return "unknown key";
  return "unknown key (did you mean " + suggestion + "?)";
}

}  // namespace dpsd::core::config_schema
