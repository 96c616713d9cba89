#pragma once
// A gate on the server→client MQTT 3.1.1 byte stream, in front of libmosquitto.
//
// libmosquitto reads a whole packet into memory before any callback runs, so whatever limits
// dpsd applies later come too late: a PUBLISH header announcing 200 MiB makes it allocate
// 200 MiB, and a server that keeps sending unacknowledged QoS 2 PUBLISHes makes it keep every
// one. The relay therefore feeds every byte it reads from the server through this gate first and
// closes the connection on the gate's first refusal, before the refused packet (or any byte of
// it) reaches libmosquitto.
//
// The gate only reads fixed headers (MQTT 3.1.1 section 2.2: a type/flags byte and a remaining
// length of one to four bytes) and skips bodies, so it costs a few bytes of state however large
// the stream is.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/expected.hpp"

namespace dpsd::core {

// DPS documents a maximum message size of 96 KB ("Quotas and limits",
// https://learn.microsoft.com/azure/iot-dps/about-iot-dps#quotas-and-limits); a packet also
// carries its topic (with $rid and retry-after) and, for QoS 1, a packet id, so allow a third
// more.
inline constexpr std::size_t kMaxInboundPacket = std::size_t{128} * 1024;
// One registration takes a SUBACK-answered subscription, a 202 and a few dozen polls at most;
// 256 PUBLISHes on one connection is already a flood.
inline constexpr std::size_t kMaxInboundPublishes = 256;

class MqttInboundGate {
 public:
  // Feeds the next chunk of the stream (chunks may split headers anywhere). An error names the
  // cause and ends in "(protocol error)"; after one, every further call returns it again.
  Status feed(std::string_view bytes);

  // How many bytes at the end of what was fed so far belong to a fixed header that is not
  // complete yet (0 to 4). The relay holds them back, so no byte of a packet the gate may still
  // refuse is forwarded.
  std::size_t held_back() const { return in_header_ ? 1 + length_bytes_ : 0; }

  std::size_t publishes() const { return publishes_; }

 private:
  Status on_type_byte(std::uint8_t byte);
  Status on_length_byte(std::uint8_t byte);
  Status refuse(std::string reason);

  std::string refused_;     // non-empty once refused
  bool in_header_ = false;  // type byte seen, remaining length incomplete
  std::uint8_t type_byte_ = 0;
  std::size_t length_bytes_ = 0;  // remaining-length bytes seen so far (0..3 while in_header_)
  std::uint32_t length_ = 0;
  std::uint64_t body_left_ = 0;  // body bytes of the current packet still to skip
  std::size_t publishes_ = 0;
};

}  // namespace dpsd::core
