#pragma once
// DPS MQTT topic names (shared/dps-protocol.md section 3) and the MQTT CONNECT identity.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace dpsd::core {

inline constexpr std::string_view kApiVersion = "2019-03-31";
inline constexpr std::string_view kResponseFilter = "$dps/registrations/res/#";
inline constexpr std::string_view kResponsePrefix = "$dps/registrations/res/";

// "{scope}/registrations/{regid}/api-version=2019-03-31&ClientVersion=dpsd%2F{version}"
std::string mqtt_username(std::string_view id_scope, std::string_view registration_id,
                          std::string_view dpsd_version);

std::string register_topic(std::string_view rid);
std::string poll_topic(std::string_view rid, std::string_view operation_id);

struct ResponseTopic {
  int status = 0;   // the HTTP-like status after "res/"
  std::string rid;  // "$rid" property, empty when absent
  // "retry-after" property: parsed seconds when it is a plain non-negative decimal (values past
  // one day saturate at 86400); nullopt when absent or not a number (retry_after_present tells
  // which).
  std::optional<std::int64_t> retry_after_s;
  bool retry_after_present = false;
};

// Parses "$dps/registrations/res/{status}/?{k=v&...}" in any property order; unknown properties
// are ignored. nullopt for any other topic or a status that is not 3 digits.
std::optional<ResponseTopic> parse_response_topic(std::string_view topic);

}  // namespace dpsd::core
