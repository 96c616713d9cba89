#pragma once
// A pure RFC 6455 client codec for MQTT over WebSocket (Azure DPS on port 443): the upgrade
// request and the check of the server's answer, and the frame encoder/decoder. No I/O: the
// secure channel feeds it the bytes it read from TLS and writes the bytes it returns. The
// random key is supplied by the caller so tests are deterministic.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/expected.hpp"
#include "core/http_head.hpp"

namespace dpsd::core::ws {

// The 16-byte nonce of the handshake, base64 (24 characters).
std::string make_key(const std::array<std::uint8_t, 16>& nonce);
// base64(SHA1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), RFC 6455 section 4.2.2.
std::string accept_for_key(std::string_view key);

struct UpgradeRequest {
  std::string host;  // Host header: "name" or "name:port" when the port is not 443
  std::string path = "/$iothub/websocket";
  std::string key;                   // from make_key
  std::string subprotocol = "mqtt";  // DPS and mosquitto want it in lower case
};
std::string build_upgrade_request(const UpgradeRequest& request);

// Incremental parser of the server's HTTP/1.1 answer to the upgrade (its head through
// core/http_head.hpp). Bytes after the blank line already belong to the WebSocket stream and
// are handed back in leftover().
// error(): "WebSocket: upgrade refused: 404 Not Found", "WebSocket: bad Sec-WebSocket-Accept", …
class UpgradeResponseParser : public http::HeadAnswer {
 public:
  static constexpr std::size_t kMaxHeaderBytes = std::size_t{16} * 1024;

  UpgradeResponseParser(std::string key, std::string subprotocol);
  // Feeds n bytes; returns Done once the headers are complete and valid, Failed with error().
  State feed(const char* data, std::size_t n);

 private:
  State check(const http::ResponseHead& head);

  std::string key_;
  std::string subprotocol_;
};

enum class Opcode : std::uint8_t {
  Continuation = 0x0,
  Text = 0x1,
  Binary = 0x2,
  Close = 0x8,
  Ping = 0x9,
  Pong = 0xA,
};

// A complete client frame: FIN set, masked with `mask` (clients must mask, RFC 6455 5.3).
// Appends to out so a caller can batch frames into one TLS write.
void encode_frame(Opcode opcode, std::string_view payload, const std::array<std::uint8_t, 4>& mask,
                  std::string& out);

// Incremental decoder of server frames. MQTT is a byte stream, so the payload of each data
// frame (binary; text is carried too, it is harmless) is handed on as soon as the frame is
// complete, fragments included; message boundaries mean nothing to MQTT. Control frames are
// reported and the caller answers them (pong, close). A frame is buffered whole before it is
// delivered, so max_message bounds memory per connection: it limits a single frame and the sum
// of a fragmented message's frames.
class FrameDecoder {
 public:
  static constexpr std::size_t kDefaultMaxMessage = std::size_t{1024} * 1024;

  struct Events {
    std::string data;                 // payload bytes of completed data frames, in order
    std::vector<std::string> pings;   // each needs a pong with the same payload
    bool close_received = false;      // the server started (or answered) the close handshake
    std::uint16_t close_code = 1005;  // 1005: no status code in the close frame
    std::string close_reason;
  };

  explicit FrameDecoder(std::size_t max_message = kDefaultMaxMessage) : max_message_(max_message) {}
  // Consumes all n bytes (buffering a partial frame) and appends what completed to events.
  // An error is a protocol violation: the connection must be dropped ("WebSocket: …").
  Status feed(const char* data, std::size_t n, Events& events);
  // True when no partial frame or fragmented message is pending.
  bool idle() const { return buffer_.empty() && !in_message_; }

 private:
  Status parse_one(Events& events, bool& consumed_frame);

  std::size_t max_message_;
  std::string buffer_;       // an incomplete frame (header and payload so far)
  bool in_message_ = false;  // a fragmented data message has started
  std::size_t message_size_ = 0;
  bool closed_ = false;
};

}  // namespace dpsd::core::ws
