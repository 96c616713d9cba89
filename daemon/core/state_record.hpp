#pragma once
// The state file's content (state.json) and the env file consumers read (iothub.env). Pure:
// serialisation, parsing and the fingerprint; the atomic writing is io/state_store. The state
// holds no secrets: the key URI is recorded, never key material.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/expected.hpp"

namespace dpsd::core {

inline constexpr int kStateSchemaVersion = 1;

struct Assignment {
  std::string status = "assigned";
  std::string assigned_hub;
  std::string device_id;
  std::string registration_id;
  std::string id_scope;
  std::string substatus;
  std::optional<std::string> payload_json;  // compact JSON text of the returned payload
  std::int64_t provisioned_at_unix = 0;     // seconds since the epoch (UTC)
  std::string attestation;                  // "symmetric_key"
  std::string enrollment;                   // "individual" | "group"
  std::string key_uri;
  std::string endpoint;     // "host:port" DPS was reached at
  std::string fingerprint;  // of the provisioning inputs, see below
  // "mqtt" or "mqtt-ws": the transport that worked, so transport = "auto" starts with it at
  // the next boot. Absent in files from older dpsd: "mqtt". Not part of the fingerprint: it
  // is an outcome, not an input.
  std::string transport = "mqtt";

  bool operator==(const Assignment&) const = default;
};

struct FingerprintInputs {
  std::string id_scope;
  std::string registration_id;
  std::string endpoint;     // host:port
  std::string attestation;  // "symmetric_key"
  std::string enrollment;
  std::string key_uri;
  // A value derived from the key that does not reveal it (HMAC of a fixed label under the key),
  // so a rotated key re-provisions. Empty when unknown.
  std::string key_tag;
};

// "sha256:<64 hex>" over the inputs, each length-prefixed so no two input sets collide.
std::string compute_fingerprint(const FingerprintInputs& inputs);

// state.json: {"schema":1,"status":…,"assignedHub":…,"deviceId":…,"registrationId":…,
// "idScope":…,"substatus":…,"payload":{…}|null,"provisionedAt":"2026-11-26T09:00:00Z",
// "provisionedAtUnix":…,"attestation":…,"enrollment":…,"keyUri":…,"endpoint":…,
// "fingerprint":…,"transport":"mqtt"|"mqtt-ws"}, pretty-printed, trailing newline.
std::string serialize_state(const Assignment& assignment);
// Rejects a wrong schema, a missing or mistyped field, or an empty hub/device id, naming it.
Expected<Assignment> parse_state(std::string_view json);

// IOTHUB_HOSTNAME=…\nIOTHUB_DEVICE_ID=…\nDPS_REGISTRATION_ID=…\nDPS_ID_SCOPE=…\n, values
// quoted for systemd's EnvironmentFile= when they hold anything but [A-Za-z0-9._:-].
std::string render_env_file(const Assignment& assignment);

}  // namespace dpsd::core
