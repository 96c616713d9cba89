// The inbound MQTT gate against well-formed DPS traffic and hostile streams, fed whole and
// split at every byte boundary.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/mqtt_inbound_gate.hpp"

namespace dpsd::core {
namespace {

// MQTT 3.1.1 section 2.2.3's encoding, written out independently of the gate.
std::string remaining_length(std::uint64_t n) {
  std::string out;
  do {
    auto byte = static_cast<std::uint8_t>(n % 128);
    n /= 128;
    if (n > 0) byte |= 0x80;
    out += static_cast<char>(byte);
  } while (n > 0);
  return out;
}

std::string packet(std::uint8_t first, const std::string& body) {
  return std::string(1, static_cast<char>(first)) + remaining_length(body.size()) + body;
}

std::string publish(std::uint8_t qos, std::size_t payload_size, std::uint16_t id = 1) {
  const std::string topic = "$dps/registrations/res/202/?$rid=1&retry-after=3";
  std::string body;
  body += static_cast<char>(topic.size() >> 8);
  body += static_cast<char>(topic.size() & 0xff);
  body += topic;
  if (qos > 0) {
    body += static_cast<char>(id >> 8);
    body += static_cast<char>(id & 0xff);
  }
  body += std::string(payload_size, 'x');
  return packet(static_cast<std::uint8_t>(0x30 | (qos << 1)), body);
}

const std::string kConnack = packet(0x20, std::string("\x00\x00", 2));
const std::string kSuback = packet(0x90, std::string("\x00\x01\x01", 3));
const std::string kPuback = packet(0x40, std::string("\x00\x01", 2));
const std::string kPingresp = packet(0xd0, "");
const std::string kUnsuback = packet(0xb0, std::string("\x00\x02", 2));

// A registration as DPS answers it: CONNACK, SUBACK, a 202, a poll's 202 and the 200.
std::string good_session() {
  return kConnack + kSuback + publish(1, 120, 1) + publish(0, 90) + kPingresp + kPuback +
         publish(1, 900, 2) + kUnsuback;
}

Status feed_all(MqttInboundGate& gate, const std::string& stream) {
  return gate.feed(stream);
}

// Splits `stream` at `cut` into two feeds; returns the first error.
Status feed_split(MqttInboundGate& gate, const std::string& stream, std::size_t cut) {
  if (auto s = gate.feed(std::string_view(stream).substr(0, cut)); !s) return s;
  return gate.feed(std::string_view(stream).substr(cut));
}

TEST(MqttInboundGate, AcceptsADpsSessionWholeSplitAndBytewise) {
  const std::string stream = good_session();
  {
    MqttInboundGate gate;
    ASSERT_TRUE(feed_all(gate, stream).ok()) << feed_all(gate, stream).error();
    EXPECT_EQ(gate.held_back(), 0u);
    EXPECT_EQ(gate.publishes(), 3u);
  }
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    MqttInboundGate gate;
    const Status s = feed_split(gate, stream, cut);
    ASSERT_TRUE(s.ok()) << "split at " << cut << ": " << s.error();
    EXPECT_EQ(gate.held_back(), 0u) << "split at " << cut;
  }
  MqttInboundGate gate;
  for (char c : stream) ASSERT_TRUE(gate.feed(std::string_view(&c, 1)).ok());
  EXPECT_EQ(gate.held_back(), 0u);
}

TEST(MqttInboundGate, EmptyChunksChangeNothing) {
  MqttInboundGate gate;
  EXPECT_TRUE(gate.feed({}).ok());
  EXPECT_TRUE(gate.feed(kConnack).ok());
  EXPECT_TRUE(gate.feed({}).ok());
  EXPECT_EQ(gate.held_back(), 0u);
}

TEST(MqttInboundGate, HoldsBackExactlyTheIncompleteHeader) {
  // 200 bytes of remaining length take two bytes: 0xc8 0x01.
  const std::string p = publish(1, 200 - 2 - 48 - 2);
  ASSERT_EQ(static_cast<std::uint8_t>(p[1]), 0xc8);
  MqttInboundGate gate;
  ASSERT_TRUE(gate.feed(p.substr(0, 1)).ok());
  EXPECT_EQ(gate.held_back(), 1u);
  ASSERT_TRUE(gate.feed(p.substr(1, 1)).ok());
  EXPECT_EQ(gate.held_back(), 2u);
  ASSERT_TRUE(gate.feed(p.substr(2, 1)).ok());
  EXPECT_EQ(gate.held_back(), 0u);  // header complete: the packet is allowed
  ASSERT_TRUE(gate.feed(p.substr(3, 10)).ok());
  EXPECT_EQ(gate.held_back(), 0u);  // body bytes are never held
  ASSERT_TRUE(gate.feed(p.substr(13) + kPingresp.substr(0, 1)).ok());
  EXPECT_EQ(gate.held_back(), 1u);
}

TEST(MqttInboundGate, OversizedPacketIsRefusedFromItsHeaderAlone) {
  // The repro: a PUBLISH announcing 200 MiB (and a 12-byte topic), no body at all.
  const std::string header = "\x30" + remaining_length(209715212);
  for (std::size_t cut = 0; cut <= header.size(); ++cut) {
    MqttInboundGate gate;
    ASSERT_TRUE(gate.feed(kConnack).ok());
    const Status s = feed_split(gate, header, cut);
    ASSERT_FALSE(s.ok()) << "split at " << cut;
    EXPECT_EQ(s.error(),
              "DPS sent an MQTT packet of 209715212 bytes; the limit is 131072 (protocol error)");
  }
}

TEST(MqttInboundGate, LimitIsExact) {
  // Remaining length exactly 128 KiB passes; one more byte is refused.
  {
    MqttInboundGate gate;
    const std::string p = packet(0x30, std::string(kMaxInboundPacket, 'a'));
    EXPECT_TRUE(gate.feed(p).ok());
    EXPECT_TRUE(gate.feed(kPingresp).ok());  // and the stream stays in step after the body
  }
  {
    MqttInboundGate gate;
    const Status s = gate.feed("\x30" + remaining_length(kMaxInboundPacket + 1));
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().find("131073 bytes; the limit is 131072"), std::string::npos) << s.error();
  }
  // Size applies to every type, not only PUBLISH.
  MqttInboundGate gate;
  const Status s = gate.feed("\x90" + remaining_length(kMaxInboundPacket + 1));
  EXPECT_FALSE(s.ok());
}

TEST(MqttInboundGate, RemainingLengthEdgeCases) {
  // One to four bytes at each boundary of MQTT 3.1.1 table 2.4 (only those under the cap
  // pass; the largest four-byte value is refused for its size, not its encoding).
  const std::vector<std::pair<std::uint64_t, bool>> cases = {
      {0, true},      {127, true},      {128, true},      {16383, true},     {16384, true},
      {131072, true}, {2097151, false}, {2097152, false}, {268435455, false}};
  for (const auto& [length, allowed] : cases) {
    MqttInboundGate gate;
    const std::string header = "\x30" + remaining_length(length);
    const Status s = gate.feed(header);
    EXPECT_EQ(s.ok(), allowed) << length << (s.ok() ? "" : ": " + s.error());
    if (!allowed) {
      EXPECT_NE(s.error().find(std::to_string(length) + " bytes"), std::string::npos) << s.error();
    }
  }
  // A non-minimal encoding (0x80 0x00 is 0) is not forbidden by 3.1.1 and costs nothing.
  MqttInboundGate gate;
  EXPECT_TRUE(gate.feed(std::string("\xd0\x80\x00", 3)).ok());
  EXPECT_EQ(gate.held_back(), 0u);
  EXPECT_TRUE(gate.feed(kPingresp).ok());
}

TEST(MqttInboundGate, FifthLengthByteIsRefused) {
  const std::string header = std::string("\x30\xff\xff\xff\xff\x01", 6);
  for (std::size_t cut = 0; cut <= header.size(); ++cut) {
    MqttInboundGate gate;
    const Status s = feed_split(gate, header, cut);
    ASSERT_FALSE(s.ok()) << "split at " << cut;
    EXPECT_EQ(s.error(),
              "DPS sent an MQTT PUBLISH whose remaining length runs past 4 bytes (protocol error)");
  }
  // Refused on the fourth byte already: its continuation bit promises a fifth.
  MqttInboundGate gate;
  EXPECT_FALSE(gate.feed(std::string("\x30\xff\xff\xff\x80", 5)).ok());
  MqttInboundGate gate2;
  EXPECT_TRUE(gate2.feed(std::string("\x30\xff\xff\xff", 4)).ok());
  EXPECT_EQ(gate2.held_back(), 4u);
}

TEST(MqttInboundGate, Qos2PublishIsRefused) {
  const std::string stream = kConnack + kSuback + publish(2, 100);
  const std::size_t start = kConnack.size() + kSuback.size();
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    MqttInboundGate gate;
    const Status s = feed_split(gate, stream, cut);
    ASSERT_FALSE(s.ok()) << "split at " << cut;
    EXPECT_EQ(s.error(), "DPS sent a QoS 2 PUBLISH, which DPS never does (protocol error)");
  }
  // Refused on the type byte: nothing of its length is needed.
  MqttInboundGate first;
  EXPECT_FALSE(first.feed(std::string_view(stream).substr(0, start + 1)).ok());
  // With DUP and RETAIN set too.
  MqttInboundGate gate;
  EXPECT_FALSE(gate.feed(std::string(1, '\x3d')).ok());
}

TEST(MqttInboundGate, QosBits3AreRefused) {
  MqttInboundGate gate;
  const Status s = gate.feed(std::string(1, '\x36'));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error(), "DPS sent a PUBLISH with QoS bits 3, which MQTT forbids (protocol error)");
}

TEST(MqttInboundGate, Qos2HandshakePacketsAreRefused) {
  const std::vector<std::pair<std::uint8_t, std::string>> cases = {
      {0x50, "PUBREC"}, {0x62, "PUBREL"}, {0x70, "PUBCOMP"}};
  for (const auto& [first, name] : cases) {
    MqttInboundGate gate;
    const Status s = gate.feed(kConnack + packet(first, std::string("\x00\x01", 2)));
    ASSERT_FALSE(s.ok()) << name;
    EXPECT_EQ(s.error(),
              "DPS sent a " + name + ", part of the QoS 2 flow DPS never uses (protocol error)");
  }
}

TEST(MqttInboundGate, ClientOnlyAndReservedTypesAreRefused) {
  const std::vector<std::pair<std::uint8_t, std::string>> client_only = {{0x10, "CONNECT"},
                                                                         {0x82, "SUBSCRIBE"},
                                                                         {0xa2, "UNSUBSCRIBE"},
                                                                         {0xc0, "PINGREQ"},
                                                                         {0xe0, "DISCONNECT"}};
  for (const auto& [first, name] : client_only) {
    MqttInboundGate gate;
    const Status s = gate.feed(std::string(1, static_cast<char>(first)));
    ASSERT_FALSE(s.ok()) << name;
    EXPECT_EQ(s.error(), "DPS sent a " + name +
                             " packet, which a server never sends to a client (protocol error)");
  }
  for (std::uint8_t first : {std::uint8_t{0x00}, std::uint8_t{0xf0}}) {
    MqttInboundGate gate;
    const Status s = gate.feed(std::string(1, static_cast<char>(first)));
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().find("reserved type " + std::to_string(first >> 4)), std::string::npos)
        << s.error();
  }
}

TEST(MqttInboundGate, ReservedFlagsOnOtherPacketsAreRefused) {
  MqttInboundGate gate;
  const Status s = gate.feed(std::string(1, '\x21'));  // CONNACK with flags 1
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error(), "DPS sent a CONNACK with reserved flags 1 (protocol error)");
}

TEST(MqttInboundGate, PublishFloodIsRefusedAfterTheLimit) {
  MqttInboundGate gate;
  ASSERT_TRUE(gate.feed(kConnack).ok());
  const std::string one = publish(1, 10);
  for (std::size_t i = 0; i < kMaxInboundPublishes; ++i) {
    ASSERT_TRUE(gate.feed(one).ok()) << "PUBLISH " << i + 1;
    ASSERT_TRUE(gate.feed(kPingresp).ok());  // other packets do not count
  }
  const Status s = gate.feed(one);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error(), "DPS sent more than 256 PUBLISH packets on one connection (protocol error)");
}

TEST(MqttInboundGate, RefusalIsSticky) {
  MqttInboundGate gate;
  ASSERT_FALSE(gate.feed(std::string(1, '\x34')).ok());
  const Status again = gate.feed(kPingresp);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error(), "DPS sent a QoS 2 PUBLISH, which DPS never does (protocol error)");
}

TEST(MqttInboundGate, LargeBodiesAreSkippedNotParsed) {
  // A body full of bytes that would be refused as headers must not be read as headers.
  MqttInboundGate gate;
  const std::string p = packet(0x32, std::string(2, '\0') + std::string(1000, '\x34'));
  for (std::size_t i = 0; i < p.size(); i += 7) {
    ASSERT_TRUE(gate.feed(std::string_view(p).substr(i, 7)).ok()) << "at " << i;
  }
  EXPECT_TRUE(gate.feed(kPingresp).ok());
}

}  // namespace
}  // namespace dpsd::core
