#pragma once
// The one Transport vocabulary: the config's [provisioning] transport, the channel's mode and
// the state file's record of what worked all use it.
#include <array>

#include "core/enum_names.hpp"

namespace dpsd::core {

// MQTT on 8883, MQTT over WebSocket on 443, or 8883 first and 443 when 8883 cannot be reached
// (remembered in the state file).
enum class Transport { Mqtt, MqttWs, Auto };

// "mqtt", "mqtt-ws", "auto": the config and state file spelling.
constexpr const char* transport_name(Transport transport) {
  constexpr std::array<const char*, 3> kNames = {"mqtt", "mqtt-ws", "auto"};
  return enum_name(transport, kNames, "mqtt");
}

}  // namespace dpsd::core
