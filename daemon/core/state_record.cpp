#include "core/state_record.hpp"

#include <openssl/evp.h>

#include <array>
#include <cstddef>
#include <ctime>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/sha256_label.hpp"

namespace dpsd::core {
namespace {

// ordered_json keeps the keys in the documented order, so the file reads the way the header
// describes it instead of alphabetically.
using Json = nlohmann::ordered_json;

constexpr std::string_view kPrefix = "state.json: ";

Error field_error(std::string_view field, std::string_view what) {
  std::string message(kPrefix);
  message += '"';
  message += field;
  message += "\" must be ";
  message += what;
  return Error{std::move(message)};
}

// Renders seconds since the epoch as RFC 3339 UTC ("2026-11-26T09:00:00Z"). Informational only:
// parse_state reads provisionedAtUnix, so a value gmtime_r cannot represent yields "".
std::string format_rfc3339_utc(std::int64_t unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return {};
  std::array<char, 64> buffer{};
  const std::size_t n = std::strftime(buffer.data(), buffer.size(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(buffer.data(), n);
}

// Reads a required string field, optionally requiring it to be non-empty.
Expected<std::string> get_string(const Json& object, std::string_view field, bool non_empty) {
  const auto it = object.find(std::string(field));
  if (it == object.end() || !it->is_string() ||
      (non_empty && it->get_ref<const std::string&>().empty())) {
    return field_error(field, non_empty ? "a non-empty string" : "a string");
  }
  return it->get<std::string>();
}

// Reads a required integer field that fits in int64_t (nlohmann stores large positive values
// as unsigned, which would otherwise wrap on conversion).
Expected<std::int64_t> get_int64(const Json& object, std::string_view field) {
  const auto it = object.find(std::string(field));
  if (it == object.end() || !it->is_number_integer()) return field_error(field, "an integer");
  if (it->is_number_unsigned()) {
    const auto u = it->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return field_error(field, "an integer that fits in 64 bits");
    }
    return static_cast<std::int64_t>(u);
  }
  return it->get<std::int64_t>();
}

bool is_plain_env_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

// Values come from DPS, i.e. from the network. A newline would let a hostile hub name add its
// own assignments (systemd keeps a newline inside quotes, but a shell or dotenv reader that
// sources the file would not), and systemd drops assignments holding other control characters
// or invalid UTF-8. Every legitimate value here (hub host name, device and registration ids,
// scope, substatus) is printable ASCII by Azure's rules, so any other byte is replaced with '?'
// rather than removed: removing could turn "evil\n.azure-devices.net" into a different but
// plausible host, while '?' makes the value visibly invalid. state.json keeps the exact value.
std::string env_value(std::string_view raw) {
  std::string value;
  value.reserve(raw.size());
  bool plain = true;
  for (const char c : raw) {
    const auto u = static_cast<unsigned char>(c);
    const char safe = (u < 0x20 || u >= 0x7f) ? '?' : c;
    if (!is_plain_env_char(safe)) plain = false;
    value += safe;
  }
  if (plain) return value;

  // Inside double quotes systemd's EnvironmentFile= and POSIX sh both treat a backslash before
  // exactly these four characters as an escape, so the same file is safe for either reader.
  std::string quoted = "\"";
  for (const char c : value) {
    if (c == '"' || c == '\\' || c == '$' || c == '`') quoted += '\\';
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

}  // namespace

std::string compute_fingerprint(const FingerprintInputs& inputs) {
  // A version label first, so a future change of inputs cannot match an old fingerprint; then
  // each field as an 8-byte big-endian length and its bytes, so ("ab","c") and ("a","bc") differ.
  std::string message = "dpsd-fingerprint-v1";
  const auto append = [&message](std::string_view field) {
    std::uint64_t size = field.size();
    for (int shift = 56; shift >= 0; shift -= 8) {
      message += static_cast<char>((size >> shift) & 0xffU);
    }
    message += field;
  };
  append(inputs.id_scope);
  append(inputs.registration_id);
  append(inputs.endpoint);
  append(inputs.attestation);
  append(inputs.enrollment);
  append(inputs.key_uri);
  append(inputs.key_tag);

  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int digest_size = 0;
  // SHA-256 from the default provider does not fail in practice; should it, an empty
  // fingerprint never looks like a valid "sha256:" one and the caller re-provisions.
  if (EVP_Digest(message.data(), message.size(), digest.data(), &digest_size, EVP_sha256(),
                 nullptr) != 1) {
    return {};
  }
  return sha256_label(digest.data(), digest_size);
}

std::string serialize_state(const Assignment& a) {
  Json payload = nullptr;
  if (a.payload_json) {
    // The payload is already JSON text; embed it as a value, not a string. Text that does not
    // parse breaks the contract of payload_json and is recorded as null rather than corrupting
    // the file.
    Json parsed = Json::parse(*a.payload_json, nullptr, false);
    if (!parsed.is_discarded()) payload = std::move(parsed);
  }
  Json j;
  j["schema"] = kStateSchemaVersion;
  j["status"] = a.status;
  j["assignedHub"] = a.assigned_hub;
  j["deviceId"] = a.device_id;
  j["registrationId"] = a.registration_id;
  j["idScope"] = a.id_scope;
  j["substatus"] = a.substatus;
  j["payload"] = std::move(payload);
  j["provisionedAt"] = format_rfc3339_utc(a.provisioned_at_unix);
  j["provisionedAtUnix"] = a.provisioned_at_unix;
  j["attestation"] = a.attestation;
  j["enrollment"] = a.enrollment;
  j["keyUri"] = a.key_uri;
  j["endpoint"] = a.endpoint;
  j["fingerprint"] = a.fingerprint;
  j["transport"] = a.transport;
  // Values from DPS may hold invalid UTF-8; the default handler would throw, so replace it.
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

Expected<Assignment> parse_state(std::string_view text) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return Error{std::string(kPrefix) + "the file is empty"};
  }
  const Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return Error{std::string(kPrefix) + "not valid JSON (truncated or corrupt)"};
  }
  if (!j.is_object()) return Error{std::string(kPrefix) + "expected a JSON object"};

  // The schema first: a file from a newer dpsd may have a different shape altogether, and
  // "schema 2 is not supported" is a better message than a complaint about some field.
  const auto schema = get_int64(j, "schema");
  if (!schema) return Error{schema.error()};
  if (*schema != kStateSchemaVersion) {
    return Error{std::string(kPrefix) + "schema " + std::to_string(*schema) +
                 " is not supported (expected " + std::to_string(kStateSchemaVersion) + ")"};
  }

  Assignment a;
  struct StringField {
    std::string_view name;
    std::string* target;
    bool non_empty;
  };
  const StringField fields[] = {
      {"status", &a.status, true},
      {"assignedHub", &a.assigned_hub, true},
      {"deviceId", &a.device_id, true},
      {"registrationId", &a.registration_id, false},
      {"idScope", &a.id_scope, false},
      {"substatus", &a.substatus, false},
      {"attestation", &a.attestation, false},
      {"enrollment", &a.enrollment, false},
      {"keyUri", &a.key_uri, false},
      {"endpoint", &a.endpoint, false},
      {"fingerprint", &a.fingerprint, false},
  };
  for (const auto& field : fields) {
    auto value = get_string(j, field.name, field.non_empty);
    if (!value) return Error{value.error()};
    *field.target = std::move(*value);
  }

  // provisionedAt is a rendering of provisionedAtUnix for people; only its type is checked, so a
  // hand-edited or differently formatted timestamp cannot disagree with the real value.
  if (auto rendered = get_string(j, "provisionedAt", false); !rendered) {
    return Error{rendered.error()};
  }
  const auto at = get_int64(j, "provisionedAtUnix");
  if (!at) return Error{at.error()};
  if (*at < 0) return field_error("provisionedAtUnix", "a non-negative integer");
  a.provisioned_at_unix = *at;

  // Optional (older files lack it); anything but the two transports that can have worked is
  // a foreign or hand-broken file.
  if (const auto transport = j.find("transport"); transport != j.end()) {
    if (!transport->is_string() ||
        (transport->get<std::string>() != "mqtt" && transport->get<std::string>() != "mqtt-ws")) {
      return field_error("transport", "\"mqtt\" or \"mqtt-ws\"");
    }
    a.transport = transport->get<std::string>();
  }

  // DPS allows any JSON value as the custom payload; null (or absent in DPS's reply) means none.
  const auto payload = j.find("payload");
  if (payload == j.end()) return field_error("payload", "present (a JSON value or null)");
  if (!payload->is_null()) {
    a.payload_json = payload->dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  return a;
}

std::string render_env_file(const Assignment& a) {
  std::string out = "# Written by dpsd; do not edit.\n";
  const auto line = [&out](std::string_view key, std::string_view value) {
    out += key;
    out += '=';
    out += env_value(value);
    out += '\n';
  };
  line("IOTHUB_HOSTNAME", a.assigned_hub);
  line("IOTHUB_DEVICE_ID", a.device_id);
  line("DPS_REGISTRATION_ID", a.registration_id);
  line("DPS_ID_SCOPE", a.id_scope);
  line("DPS_SUBSTATUS", a.substatus);
  return out;
}

}  // namespace dpsd::core
