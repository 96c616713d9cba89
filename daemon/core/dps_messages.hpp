#pragma once
// DPS request bodies and response parsing (shared/dps-protocol.md section 4). Every parser here
// sees bytes from the network: they never throw and never trust a type.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/expected.hpp"

namespace dpsd::core {

// The register body: {"registrationId":"…"} plus "payload" when a custom payload is given.
// custom_payload_json must already be valid JSON (the config layer checks it).
std::string register_body(std::string_view registration_id,
                          const std::optional<std::string>& custom_payload_json);

enum class OperationState { Unassigned, Assigning, Assigned, Failed, Disabled, Unknown };

struct RegistrationState {
  std::string registration_id;
  std::string assigned_hub;
  std::string device_id;
  std::string status;
  std::string substatus;
  std::optional<std::int64_t> error_code;
  std::string error_message;
  std::string created_utc;
  std::string last_updated_utc;
  std::string etag;
  std::optional<std::string> payload_json;  // the returned custom payload, re-serialised compactly
};

struct OperationStatus {
  std::string operation_id;
  OperationState state = OperationState::Unknown;
  std::string status_text;  // as sent, for messages about unknown states
  std::optional<RegistrationState> registration_state;
};

// Parses a 200/202 body. Errors name the field: "reply is not valid JSON at byte 17",
// "reply.status is missing", "registrationState is not an object". For state Assigned it also
// requires registrationState.assignedHub and .deviceId to be non-empty strings.
Expected<OperationStatus> parse_operation_status(std::string_view body);

struct ServiceError {
  std::optional<std::int64_t> error_code;  // e.g. 401002
  std::string message;                     // e.g. "Invalid certificate."
  std::string tracking_id;
};

// Lenient parse of a 4xx/5xx body; a body that is not the documented shape yields an empty
// ServiceError rather than an error, since the status in the topic already says what happened.
ServiceError parse_service_error(std::string_view body);

}  // namespace dpsd::core
