#pragma once
// The daemon's configuration: /etc/dpsd/config.toml plus drop-ins config.d/*.toml (applied in
// lexical order, later files override single keys). Unknown keys are errors so typos never pass
// silently. Parsing is pure (texts in, Config or problems out): the keys and their checks are in
// config_schema, the merging in config_merge; io::load_config() (io/config_files.hpp) reads the
// files. Every problem names the file, the key and the reason.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/expected.hpp"
#include "core/http_proxy.hpp"
#include "core/key_uri.hpp"  // the URI syntax of the key fields below, for their users
#include "core/transport.hpp"

namespace dpsd::core {

enum class AttestationMethod { SymmetricKey, X509 };
enum class Enrollment { Individual, Group };
// Whether a cached assignment is confirmed with DPS at start-up (see etc/dpsd/config.toml).
enum class ReprovisionOnStart { Never, Always, WhenStale };

struct Config {
  // [provisioning]
  std::string endpoint_host = "global.azure-devices-provisioning.net";
  std::optional<std::uint16_t> endpoint_port;  // from "host:port"; else the transport's default
  std::string id_scope;
  std::string registration_id;
  std::optional<std::filesystem::path> payload_file;
  std::optional<std::string> payload_json;  // contents of payload_file, validated as JSON
  // Default "never": DPS assignments change only when an operator re-assigns the device, and a
  // fleet that asks DPS at every boot spends the service's registration quota (and its own boot
  // time) for nothing; Reprovision() on D-Bus or SIGHUP after a config change still re-registers.
  ReprovisionOnStart reprovision_on_start = ReprovisionOnStart::Never;
  std::chrono::milliseconds stale_after{std::chrono::hours(24 * 30)};  // for "when-stale"
  Transport transport = Transport::Mqtt;
  // The port auto falls back to (MQTT over WebSocket). 443 except in tests and odd networks.
  std::uint16_t websocket_port = 443;
  // [proxy] url: an HTTP CONNECT proxy. Holds the proxy password when the URL has one: log
  // proxy->display(), never the URL. When url is not set at all (proxy_configured false),
  // https_proxy / HTTPS_PROXY / no_proxy from the environment decide
  // (core::proxy::proxy_from_environment); url = "" means direct, whatever the environment says.
  std::optional<proxy::ProxyUrl> proxy;
  bool proxy_configured = false;
  // [proxy] credentials: "file:///path" or "credential:NAME" holding "user:password" (one line).
  // io::load_config() reads it (key-file rules: regular file, private mode) into proxy->user and
  // proxy->password, so nothing downstream needs to know where they came from.
  std::optional<std::string> proxy_credentials_uri;
  // [provisioning.attestation]
  AttestationMethod method = AttestationMethod::SymmetricKey;
  Enrollment enrollment = Enrollment::Individual;
  std::string symmetric_key_uri;  // "file:///abs/path", "credential:NAME" or "pkcs11:…"
  // method "x509": the client certificate (leaf first, then intermediates) and its private key.
  std::string identity_cert_uri;  // "file:///abs/path.pem"
  std::string identity_pk_uri;    // "file:///…", "credential:NAME" or "pkcs11:…" (RFC 7512)
  std::chrono::seconds sas_token_lifetime{3600};
  // [tls]
  std::optional<std::filesystem::path> trust_bundle;  // nullopt: the OS trust store
  // [pkcs11]: the module that serves every pkcs11: URI above, and where the user PIN is. Never
  // a PIN in clear here: config files are world-readable (0644) by design.
  std::optional<std::filesystem::path> pkcs11_module;
  std::optional<std::filesystem::path> pkcs11_pin_file;
  std::optional<std::string> pkcs11_pin_credential;  // $CREDENTIALS_DIRECTORY/NAME
  // [network]
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds tls_handshake_timeout{10000};
  std::chrono::milliseconds response_timeout{30000};  // no DPS reply within this: retry
  // [retry]
  std::chrono::milliseconds retry_initial{2000};
  std::chrono::milliseconds retry_max{300000};
  std::chrono::milliseconds retry_refused{3600000};  // after DPS said no (401, disabled, …)
  // [paths]
  std::filesystem::path state_dir = "/var/lib/dpsd";
  std::filesystem::path runtime_dir = "/run/dpsd";

  // The endpoint port for the first try: websocket_port (443) for mqtt-ws, else 8883 (auto
  // falls back to websocket_port).
  std::uint16_t port() const {
    return endpoint_port.value_or(transport == Transport::MqttWs ? websocket_port : 8883);
  }
};

struct ConfigProblem {
  std::string file;    // the file the key came from (or would go in)
  std::string key;     // dotted key, e.g. "provisioning.id_scope"; empty for file-level problems
  std::string reason;  // e.g. "is required", "unknown key", "must be a string"
  std::string to_string() const;  // "file: key: reason"
};

struct ConfigResult {
  std::optional<Config> config;  // set only when problems is empty
  std::vector<ConfigProblem> problems;
};

struct ConfigDocument {
  std::string name;  // file path for messages
  std::string text;  // TOML
  // True when only the owner (and dpsd's own group) can read the file: the one place a proxy
  // password in [proxy] url is accepted. io::load_config() sets it from the file's mode.
  bool private_file = false;
};

// Pure: applies the main document, then the drop-ins in the order given, and validates each
// key and the rules across keys. Does not read payload_file, key or credential files. Every
// required key missing is reported against the main document (where an operator would add it),
// except after a syntax error: the key may well be in the document that failed to parse.
ConfigResult parse_config(const ConfigDocument& main,
                          const std::vector<ConfigDocument>& drop_ins = {});

// A payload_file's contents: a JSON object (DPS types DeviceRegistration.payload as an object,
// models.tsp), nested at most kMaxPayloadDepth deep (checked with a SAX pass before any DOM is
// built, so a hostile file cannot exhaust the stack). Returns the compact form that goes into the
// register request; errors say what was found ("must hold a JSON object, found an array").
constexpr std::size_t kMaxPayloadDepth = 64;
Expected<std::string> validate_payload_json(std::string_view text);

// Registration IDs are case-insensitive at DPS (learn.microsoft.com/azure/iot-dps/
// concepts-service, "Registration ID"), so an X.509 certificate's CN matches the configured id
// when they differ only in ASCII case.
bool same_registration_id(std::string_view a, std::string_view b);

}  // namespace dpsd::core
