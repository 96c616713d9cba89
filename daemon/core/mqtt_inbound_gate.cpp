#include "core/mqtt_inbound_gate.hpp"

#include <algorithm>
#include <array>
#include <utility>

namespace dpsd::core {
namespace {

// MQTT 3.1.1 section 2.2.1, table 2.1.
constexpr std::array<const char*, 16> kTypeNames = {
    "reserved (0)", "CONNECT",  "CONNACK",    "PUBLISH",      "PUBACK",      "PUBREC",
    "PUBREL",       "PUBCOMP",  "SUBSCRIBE",  "SUBACK",       "UNSUBSCRIBE", "UNSUBACK",
    "PINGREQ",      "PINGRESP", "DISCONNECT", "reserved (15)"};

constexpr std::uint8_t kConnect = 1, kPublish = 3, kPubrec = 5, kPubrel = 6, kPubcomp = 7,
                       kSubscribe = 8, kUnsubscribe = 10, kPingreq = 12, kDisconnect = 14,
                       kReserved15 = 15;

}  // namespace

Status MqttInboundGate::refuse(std::string reason) {
  refused_ = std::move(reason) + " (protocol error)";
  return Error{refused_};
}

Status MqttInboundGate::feed(std::string_view bytes) {
  if (!refused_.empty()) return Error{refused_};
  std::size_t at = 0;
  while (at < bytes.size()) {
    if (body_left_ > 0) {
      const auto skip =
          static_cast<std::size_t>(std::min<std::uint64_t>(body_left_, bytes.size() - at));
      body_left_ -= skip;
      at += skip;
      continue;
    }
    const auto byte = static_cast<std::uint8_t>(bytes[at++]);
    Status step = in_header_ ? on_length_byte(byte) : on_type_byte(byte);
    if (!step) return step;
  }
  return ok_status();
}

// Everything about a packet that the first byte decides is decided here, so a refused packet
// is refused before even its length arrives.
Status MqttInboundGate::on_type_byte(std::uint8_t byte) {
  const std::uint8_t type = byte >> 4;
  const std::uint8_t flags = byte & 0x0f;
  const std::string name = kTypeNames[type];
  switch (type) {
    case 0:
    case kReserved15:
      return refuse("DPS sent an MQTT packet of reserved type " + std::to_string(type));
    case kConnect:
    case kSubscribe:
    case kUnsubscribe:
    case kPingreq:
    case kDisconnect:
      // MQTT 3.1.1 section 2.2.1: these flow from client to server only.
      return refuse("DPS sent a " + name + " packet, which a server never sends to a client");
    case kPubrec:
    case kPubrel:
    case kPubcomp:
      // DPS grants at most QoS 1 ("DPS never sends QoS 2", shared/dps-protocol.md, from
      // https://learn.microsoft.com/azure/iot-dps/iot-dps-mqtt-support), and dpsd never
      // publishes with QoS 2, so no QoS 2 handshake packet can be legitimate.
      return refuse("DPS sent a " + name + ", part of the QoS 2 flow DPS never uses");
    case kPublish: {
      const unsigned qos = (flags >> 1) & 0x3;
      if (qos == 3) return refuse("DPS sent a PUBLISH with QoS bits 3, which MQTT forbids");
      if (qos == 2) return refuse("DPS sent a QoS 2 PUBLISH, which DPS never does");
      if (++publishes_ > kMaxInboundPublishes) {
        return refuse("DPS sent more than " + std::to_string(kMaxInboundPublishes) +
                      " PUBLISH packets on one connection");
      }
      break;
    }
    default:
      // MQTT 3.1.1 section 2.2.2: the flags of every other packet are reserved and zero, and a
      // receiver must close the connection on anything else [MQTT-2.2.2-2].
      if (flags != 0) {
        return refuse("DPS sent a " + name + " with reserved flags " + std::to_string(flags));
      }
      break;
  }
  type_byte_ = byte;
  in_header_ = true;
  length_bytes_ = 0;
  length_ = 0;
  return ok_status();
}

// MQTT 3.1.1 section 2.2.3: seven bits per byte, least significant first, at most four bytes.
Status MqttInboundGate::on_length_byte(std::uint8_t byte) {
  length_ |= static_cast<std::uint32_t>(byte & 0x7f) << (7 * length_bytes_);
  ++length_bytes_;
  if (byte & 0x80) {
    if (length_bytes_ == 4) {
      return refuse("DPS sent an MQTT " + std::string(kTypeNames[type_byte_ >> 4]) +
                    " whose remaining length runs past 4 bytes");
    }
    return ok_status();
  }
  in_header_ = false;
  if (length_ > kMaxInboundPacket) {
    return refuse("DPS sent an MQTT packet of " + std::to_string(length_) +
                  " bytes; the limit is " + std::to_string(kMaxInboundPacket));
  }
  body_left_ = length_;
  return ok_status();
}

}  // namespace dpsd::core
