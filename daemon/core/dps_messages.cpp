#include "core/dps_messages.hpp"

#include <limits>
#include <nlohmann/json.hpp>

#include "core/json_depth.hpp"
#include "core/reply_validation.hpp"

namespace dpsd::core {
namespace {

using nlohmann::json;

// Deep enough for any realistic custom-allocation payload, shallow enough that dump() (which
// recurses) and the DOM cannot be driven into the stack or memory by a hostile reply.
constexpr std::size_t kMaxDepth = 64;

// dump() throws on invalid UTF-8 by default; "replace" makes it total. Parsed values are always
// valid UTF-8 (the lexer rejects anything else), so this only matters for caller-given strings.
std::string compact(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

Expected<json> parse_reply(std::string_view body) {
  JsonDepthCheck validator(kMaxDepth);
  if (!json::sax_parse(body.begin(), body.end(), &validator)) {
    if (validator.too_deep()) {
      return Error{"reply is nested deeper than " + std::to_string(kMaxDepth) + " levels"};
    }
    if (validator.error_position()) {
      return Error{"reply is not valid JSON at byte " +
                   std::to_string(*validator.error_position())};
    }
    return Error{"reply is not valid JSON"};
  }
  json parsed = json::parse(body.begin(), body.end(), nullptr, false);
  if (parsed.is_discarded()) return Error{"reply is not valid JSON"};
  return parsed;
}

// Looks up an optional member; an explicit null counts as absent, since JSON writers commonly
// emit null for an unset field.
const json* member(const json& object, const char* name) {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

Status read_string(const json& object, const char* name, const std::string& path,
                   std::string& out) {
  const json* value = member(object, name);
  if (value == nullptr) return ok_status();
  if (!value->is_string()) return Error{path + "." + name + " is not a string"};
  out = value->get_ref<const std::string&>();
  return ok_status();
}

std::optional<std::int64_t> as_int64(const json& value) {
  if (value.is_number_unsigned()) {
    const auto u = value.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      return std::nullopt;
    }
    return static_cast<std::int64_t>(u);
  }
  if (value.is_number_integer()) return value.get<std::int64_t>();
  return std::nullopt;
}

Status require_non_empty(const json& object, const char* name, const std::string& path) {
  const json* value = member(object, name);
  const std::string field = path + "." + name;
  if (value == nullptr) return Error{field + " is missing"};
  if (!value->is_string()) return Error{field + " is not a string"};
  if (value->get_ref<const std::string&>().empty()) return Error{field + " is empty"};
  return ok_status();
}

Expected<RegistrationState> parse_registration_state(const json& object) {
  const std::string path = "reply.registrationState";
  RegistrationState state;
  struct Field {
    const char* name;
    std::string* out;
  };
  const Field fields[] = {
      {"registrationId", &state.registration_id},
      {"assignedHub", &state.assigned_hub},
      {"deviceId", &state.device_id},
      {"status", &state.status},
      {"substatus", &state.substatus},
      {"errorMessage", &state.error_message},
      {"createdDateTimeUtc", &state.created_utc},
      {"lastUpdatedDateTimeUtc", &state.last_updated_utc},
      {"etag", &state.etag},
  };
  for (const Field& field : fields) {
    if (Status s = read_string(object, field.name, path, *field.out); !s) return Error{s.error()};
  }
  if (const json* code = member(object, "errorCode")) {
    if (!code->is_number_integer()) return Error{path + ".errorCode is not an integer"};
    state.error_code = as_int64(*code);
    if (!state.error_code) return Error{path + ".errorCode is out of range"};
  }
  if (const json* payload = member(object, "payload")) state.payload_json = compact(*payload);
  return state;
}

OperationState state_from_text(std::string_view text) {
  if (text == "unassigned") return OperationState::Unassigned;
  if (text == "assigning") return OperationState::Assigning;
  if (text == "assigned") return OperationState::Assigned;
  if (text == "failed") return OperationState::Failed;
  if (text == "disabled") return OperationState::Disabled;
  return OperationState::Unknown;
}

}  // namespace

std::string register_body(std::string_view registration_id,
                          const std::optional<std::string>& custom_payload_json) {
  // Built by hand rather than from a json object because nlohmann::json sorts keys, and the SDKs
  // put registrationId first.
  std::string body = "{\"registrationId\":" + compact(json(std::string(registration_id)));
  if (custom_payload_json) {
    json payload = json::parse(*custom_payload_json, nullptr, false);
    // The config layer guarantees valid JSON; should that ever break, sending no payload is
    // better than sending a body the service rejects as a whole.
    if (!payload.is_discarded()) body += ",\"payload\":" + compact(payload);
  }
  body += '}';
  return body;
}

namespace {

// "reply.registrationState.assignedHub is not a DNS host name: …": the field, then the rule.
Status check_field(const Status& rule, const std::string& field) {
  if (rule) return rule;
  return Error{field + " " + rule.error()};
}

// What a reply without "status" means. The spec makes status optional (models.tsp,
// RegistrationOperationStatus), so a body that still says enough is read rather than refused:
// registrationState.status when it has one; an assignment (hub and device) means assigned; an
// operationId alone means the operation is still running. Anything less is malformed.
std::optional<std::string> infer_status(const OperationStatus& op) {
  if (op.registration_state) {
    const RegistrationState& state = *op.registration_state;
    if (!state.status.empty()) return state.status;
    if (!state.assigned_hub.empty() && !state.device_id.empty()) return "assigned";
  }
  if (!op.operation_id.empty()) return "assigning";
  return std::nullopt;
}

}  // namespace

Expected<OperationStatus> parse_operation_status(std::string_view body) {
  Expected<json> parsed = parse_reply(body);
  if (!parsed) return Error{parsed.error()};
  const json& root = *parsed;
  if (!root.is_object()) return Error{"reply is not a JSON object"};

  OperationStatus result;
  if (Status s = read_string(root, "operationId", "reply", result.operation_id); !s) {
    return Error{s.error()};
  }
  if (Status s = check_field(validate_operation_id(result.operation_id), "reply.operationId"); !s) {
    return Error{s.error()};
  }
  if (const auto it = root.find("registrationState"); it != root.end() && !it->is_null()) {
    if (!it->is_object()) return Error{"reply.registrationState is not an object"};
    Expected<RegistrationState> state = parse_registration_state(*it);
    if (!state) return Error{state.error()};
    result.registration_state = std::move(*state);
  }
  const json* status = member(root, "status");
  if (status != nullptr) {
    if (!status->is_string()) return Error{"reply.status is not a string"};
    result.status_text = status->get_ref<const std::string&>();
  } else if (auto inferred = infer_status(result)) {
    result.status_text = std::move(*inferred);
  } else {
    return Error{"reply.status is missing"};
  }
  result.state = state_from_text(result.status_text);

  if (result.state == OperationState::Assigned) {
    // Both SDKs in C refuse an assignment that names only one of hub and device: without both
    // there is nothing to connect to. Both are validated before anything stores them.
    if (!result.registration_state) return Error{"reply.registrationState is missing"};
    const json& state = *root.find("registrationState");
    const std::string path = "reply.registrationState";
    if (Status s = require_non_empty(state, "assignedHub", path); !s) return Error{s.error()};
    if (Status s = require_non_empty(state, "deviceId", path); !s) return Error{s.error()};
    const RegistrationState& rs = *result.registration_state;
    if (Status s = check_field(validate_host_name(rs.assigned_hub), path + ".assignedHub"); !s) {
      return Error{s.error()};
    }
    if (Status s = check_field(validate_device_id(rs.device_id), path + ".deviceId"); !s) {
      return Error{s.error()};
    }
    if (Status s = check_field(validate_substatus(rs.substatus), path + ".substatus"); !s) {
      return Error{s.error()};
    }
  }
  return result;
}

ServiceError parse_service_error(std::string_view body) {
  ServiceError result;
  Expected<json> parsed = parse_reply(body);
  if (!parsed || !parsed->is_object()) return result;
  const json& root = *parsed;
  if (const json* code = member(root, "errorCode")) result.error_code = as_int64(*code);
  if (const json* message = member(root, "message"); message && message->is_string()) {
    result.message = message->get_ref<const std::string&>();
  }
  if (const json* tracking = member(root, "trackingId"); tracking && tracking->is_string()) {
    result.tracking_id = tracking->get_ref<const std::string&>();
  }
  return result;
}

}  // namespace dpsd::core
