// The RFC 6455 client codec against well-formed and hostile server input.
#include <gtest/gtest.h>

#include <string>

#include "core/websocket.hpp"

namespace dpsd::core::ws {
namespace {

constexpr std::array<std::uint8_t, 4> kMask{0x37, 0xfa, 0x21, 0x3d};

// RFC 6455 section 1.3's example key and answer.
constexpr const char* kRfcKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr const char* kRfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

std::string good_response(const std::string& accept = kRfcAccept,
                          const std::string& protocol_line = "Sec-WebSocket-Protocol: mqtt\r\n") {
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: " +
         accept + "\r\n" + protocol_line + "\r\n";
}

UpgradeResponseParser::State parse(UpgradeResponseParser& parser, const std::string& text) {
  return parser.feed(text.data(), text.size());
}

// A server frame (unmasked) with the given first byte and payload.
std::string server_frame(std::uint8_t first, const std::string& payload) {
  std::string out(1, static_cast<char>(first));
  const std::size_t n = payload.size();
  if (n < 126) {
    out += static_cast<char>(n);
  } else if (n <= 0xffff) {
    out += static_cast<char>(126);
    out += static_cast<char>(n >> 8);
    out += static_cast<char>(n & 0xff);
  } else {
    out += static_cast<char>(127);
    for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
  }
  return out + payload;
}

TEST(WebSocketHandshake, AcceptKeyMatchesRfcExample) {
  EXPECT_EQ(accept_for_key(kRfcKey), kRfcAccept);
  std::array<std::uint8_t, 16> nonce{};
  const std::string sample = "the sample nonce";
  std::copy(sample.begin(), sample.end(), nonce.begin());
  EXPECT_EQ(make_key(nonce), kRfcKey);
}

TEST(WebSocketHandshake, RequestHasEveryHeader) {
  const std::string request =
      build_upgrade_request({.host = "dps.example", .path = "/$iothub/websocket", .key = kRfcKey});
  EXPECT_EQ(request.rfind("GET /$iothub/websocket HTTP/1.1\r\n", 0), 0u);
  EXPECT_NE(request.find("\r\nHost: dps.example\r\n"), std::string::npos);
  EXPECT_NE(request.find("\r\nUpgrade: websocket\r\n"), std::string::npos);
  EXPECT_NE(request.find("\r\nConnection: Upgrade\r\n"), std::string::npos);
  EXPECT_NE(request.find("\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"), std::string::npos);
  EXPECT_NE(request.find("\r\nSec-WebSocket-Version: 13\r\n"), std::string::npos);
  EXPECT_NE(request.find("\r\nSec-WebSocket-Protocol: mqtt\r\n"), std::string::npos);
  EXPECT_EQ(request.substr(request.size() - 4), "\r\n\r\n");
}

TEST(WebSocketHandshake, AcceptsGoodResponseByteByByteAndKeepsLeftover) {
  UpgradeResponseParser parser(kRfcKey, "mqtt");
  const std::string text = good_response() +
                           "\x82\x02"
                           "ab";
  for (std::size_t i = 0; i + 1 < text.size() - 4; ++i) {
    ASSERT_EQ(parser.feed(&text[i], 1), UpgradeResponseParser::State::NeedMore) << i;
  }
  const std::size_t at = text.size() - 5;
  EXPECT_EQ(parser.feed(&text[at], 5), UpgradeResponseParser::State::Done) << parser.error();
  EXPECT_EQ(parser.leftover(),
            "\x82\x02"
            "ab");
}

TEST(WebSocketHandshake, HeaderNamesAndTokensAreCaseInsensitive) {
  UpgradeResponseParser parser(kRfcKey, "mqtt");
  const std::string text =
      std::string("HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n") +
      "connection: keep-alive, UPGRADE\r\nsec-websocket-accept:  " + kRfcAccept +
      "\r\nsec-websocket-protocol: mqtt\r\n\r\n";
  EXPECT_EQ(parse(parser, text), UpgradeResponseParser::State::Done) << parser.error();
}

TEST(WebSocketHandshake, RefusedUpgradeNamesStatus) {
  UpgradeResponseParser parser(kRfcKey, "mqtt");
  EXPECT_EQ(parse(parser, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            UpgradeResponseParser::State::Failed);
  EXPECT_EQ(parser.error(), "WebSocket: upgrade refused: 404 Not Found");
}

TEST(WebSocketHandshake, BadAcceptKey) {
  UpgradeResponseParser parser(kRfcKey, "mqtt");
  EXPECT_EQ(parse(parser, good_response("AAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
            UpgradeResponseParser::State::Failed);
  EXPECT_EQ(parser.error(), "WebSocket: bad Sec-WebSocket-Accept");
}

TEST(WebSocketHandshake, MissingAcceptKey) {
  UpgradeResponseParser parser(kRfcKey, "mqtt");
  EXPECT_EQ(parse(parser,
                  "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Protocol: mqtt\r\n\r\n"),
            UpgradeResponseParser::State::Failed);
  EXPECT_EQ(parser.error(), "WebSocket: bad Sec-WebSocket-Accept");
}

TEST(WebSocketHandshake, MissingSubprotocol) {
  UpgradeResponseParser parser(kRfcKey, "mqtt");
  EXPECT_EQ(parse(parser, good_response(kRfcAccept, "")), UpgradeResponseParser::State::Failed);
  EXPECT_EQ(parser.error(), "WebSocket: server did not accept subprotocol mqtt");
}

TEST(WebSocketHandshake, UpperCaseSubprotocolIsNotOurs) {
  UpgradeResponseParser parser(kRfcKey, "mqtt");
  EXPECT_EQ(parse(parser, good_response(kRfcAccept, "Sec-WebSocket-Protocol: MQTT\r\n")),
            UpgradeResponseParser::State::Failed);
  EXPECT_EQ(parser.error(), "WebSocket: server did not accept subprotocol mqtt");
}

TEST(WebSocketHandshake, MissingUpgradeOrConnection) {
  UpgradeResponseParser a(kRfcKey, "mqtt");
  EXPECT_EQ(
      parse(a, std::string("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ") +
                   kRfcAccept + "\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"),
      UpgradeResponseParser::State::Failed);
  UpgradeResponseParser b(kRfcKey, "mqtt");
  EXPECT_EQ(
      parse(b, std::string("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: ") +
                   kRfcAccept + "\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"),
      UpgradeResponseParser::State::Failed);
}

TEST(WebSocketHandshake, GarbageAndEndlessHeadersFail) {
  UpgradeResponseParser garbage(kRfcKey, "mqtt");
  EXPECT_EQ(parse(garbage, "SSH-2.0-OpenSSH\r\n\r\n"), UpgradeResponseParser::State::Failed);
  EXPECT_EQ(garbage.error().rfind("WebSocket: not an HTTP response", 0), 0u);

  UpgradeResponseParser endless(kRfcKey, "mqtt");
  std::string text = "HTTP/1.1 101 OK\r\n";
  text += std::string(UpgradeResponseParser::kMaxHeaderBytes + 10, 'x');
  EXPECT_EQ(parse(endless, text), UpgradeResponseParser::State::Failed);

  UpgradeResponseParser control(kRfcKey, "mqtt");
  EXPECT_EQ(parse(control, "HTTP/1.1 500 \x1b[31mboom\r\n\r\n"),
            UpgradeResponseParser::State::Failed);
  EXPECT_EQ(control.error().find('\x1b'), std::string::npos);
}

TEST(WebSocketFrames, EncodesMaskedBinaryWithEveryLengthForm) {
  for (std::size_t n : {0u, 5u, 125u, 126u, 65535u, 65536u}) {
    const std::string payload(n, 'q');
    std::string out;
    encode_frame(Opcode::Binary, payload, kMask, out);
    ASSERT_GE(out.size(), 2u);
    EXPECT_EQ(static_cast<std::uint8_t>(out[0]), 0x82);
    EXPECT_TRUE(static_cast<std::uint8_t>(out[1]) & 0x80) << "client frames are masked";
    const std::size_t header = n < 126 ? 2 : n <= 0xffff ? 4 : 10;
    ASSERT_EQ(out.size(), header + 4 + n);
    for (std::size_t i = 0; i < n; ++i) {
      ASSERT_EQ(static_cast<std::uint8_t>(out[header + 4 + i]) ^ kMask[i % 4], 'q');
    }
  }
}

TEST(WebSocketFrames, DecodesBinaryAcrossArbitrarySplits) {
  const std::string stream = server_frame(0x82, "hello") +
                             server_frame(0x82, std::string(300, 'z')) +
                             server_frame(0x82, std::string(70000, 'w'));
  FrameDecoder decoder;
  FrameDecoder::Events events;
  for (std::size_t i = 0; i < stream.size(); i += 7) {
    ASSERT_TRUE(
        decoder.feed(stream.data() + i, std::min<std::size_t>(7, stream.size() - i), events));
  }
  EXPECT_EQ(events.data, "hello" + std::string(300, 'z') + std::string(70000, 'w'));
  EXPECT_TRUE(decoder.idle());
}

TEST(WebSocketFrames, TruncatedFrameWaits) {
  const std::string frame = server_frame(0x82, std::string(200, 'a'));
  FrameDecoder decoder;
  FrameDecoder::Events events;
  ASSERT_TRUE(decoder.feed(frame.data(), frame.size() - 1, events));
  EXPECT_TRUE(events.data.empty());
  EXPECT_FALSE(decoder.idle());
  ASSERT_TRUE(decoder.feed(frame.data() + frame.size() - 1, 1, events));
  EXPECT_EQ(events.data.size(), 200u);
}

TEST(WebSocketFrames, FragmentedMessageWithInterleavedPing) {
  const std::string stream = server_frame(0x02, "ab") + server_frame(0x89, "p1") +
                             server_frame(0x00, "cd") + server_frame(0x80, "ef");
  FrameDecoder decoder;
  FrameDecoder::Events events;
  ASSERT_TRUE(decoder.feed(stream.data(), stream.size(), events));
  EXPECT_EQ(events.data, "abcdef");
  ASSERT_EQ(events.pings.size(), 1u);
  EXPECT_EQ(events.pings[0], "p1");
  EXPECT_TRUE(decoder.idle());
}

TEST(WebSocketFrames, BadFragmentSequences) {
  FrameDecoder::Events events;
  FrameDecoder orphan;
  const std::string a = server_frame(0x80, "x");
  EXPECT_FALSE(orphan.feed(a.data(), a.size(), events));
  FrameDecoder nested;
  const std::string b = server_frame(0x02, "x") + server_frame(0x82, "y");
  EXPECT_FALSE(nested.feed(b.data(), b.size(), events));
}

TEST(WebSocketFrames, PongIgnoredCloseReported) {
  std::string close_body =
      "\x03\xe8"
      "bye";  // 1000
  const std::string stream = server_frame(0x8A, "") + server_frame(0x88, close_body);
  FrameDecoder decoder;
  FrameDecoder::Events events;
  ASSERT_TRUE(decoder.feed(stream.data(), stream.size(), events));
  EXPECT_TRUE(events.close_received);
  EXPECT_EQ(events.close_code, 1000);
  EXPECT_EQ(events.close_reason, "bye");
  const std::string more = server_frame(0x82, "late");
  EXPECT_FALSE(decoder.feed(more.data(), more.size(), events));
}

TEST(WebSocketFrames, RejectsMaskedServerFrame) {
  const std::string frame = std::string("\x82\x81", 2) + "\x01\x02\x03\x04" + "a";
  FrameDecoder decoder;
  FrameDecoder::Events events;
  auto status = decoder.feed(frame.data(), frame.size(), events);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error(), "WebSocket: server sent a masked frame");
}

TEST(WebSocketFrames, RejectsReservedBitsAndUnknownOpcodes) {
  FrameDecoder::Events events;
  for (std::uint8_t first : {0xC2, 0xA2, 0x92, 0x83, 0x8B}) {
    FrameDecoder decoder;
    const std::string frame = server_frame(first, "x");
    EXPECT_FALSE(decoder.feed(frame.data(), frame.size(), events)) << int(first);
  }
}

TEST(WebSocketFrames, RejectsBadControlFrames) {
  FrameDecoder::Events events;
  FrameDecoder fragmented_ping;
  const std::string a = server_frame(0x09, "x");
  EXPECT_FALSE(fragmented_ping.feed(a.data(), a.size(), events));
  FrameDecoder long_ping;
  const std::string b = server_frame(0x89, std::string(126, 'x'));
  EXPECT_FALSE(long_ping.feed(b.data(), b.size(), events));
  FrameDecoder one_byte_close;
  const std::string c = server_frame(0x88, "x");
  EXPECT_FALSE(one_byte_close.feed(c.data(), c.size(), events));
}

TEST(WebSocketFrames, OversizedFramesFailBeforeTheirPayloadArrives) {
  FrameDecoder::Events events;
  // 64-bit length with the top bit set (not allowed), and a huge but legal one: both must fail
  // on the header alone, not after buffering gigabytes.
  FrameDecoder top_bit;
  const std::string a = std::string("\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x01", 10);
  EXPECT_FALSE(top_bit.feed(a.data(), a.size(), events));
  FrameDecoder huge;
  const std::string b = std::string("\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x00", 10);
  auto status = huge.feed(b.data(), b.size(), events);
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().find("larger than"), std::string::npos);

  FrameDecoder limited(1000);
  const std::string c =
      server_frame(0x02, std::string(600, 'a')) + server_frame(0x80, std::string(600, 'b'));
  EXPECT_FALSE(limited.feed(c.data(), c.size(), events));
  FrameDecoder exact(1000);
  const std::string d = server_frame(0x82, std::string(1000, 'a'));
  EXPECT_TRUE(exact.feed(d.data(), d.size(), events));
}

TEST(WebSocketFrames, SixtyFourBitLengthForModerateFrame) {
  // A server may use the 8-byte form for any length; it must be honoured.
  std::string frame = std::string("\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x03", 10) + "abc";
  FrameDecoder decoder;
  FrameDecoder::Events events;
  ASSERT_TRUE(decoder.feed(frame.data(), frame.size(), events));
  EXPECT_EQ(events.data, "abc");
}

}  // namespace
}  // namespace dpsd::core::ws
