#pragma once
// MQTT over WebSocket (RFC 6455) over the TLS stream: the upgrade as a Handshake, then frames.
// What is written goes out as one masked binary frame per write (MQTT does not care where
// frames end); what is read is the payload of the server's data frames. Pings are answered and
// a close frame is echoed here, so the relay above sees a plain byte stream that ends.
// The codec (request, answer check, frames) is core::ws's; this stage does the I/O.
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "core/websocket.hpp"
#include "io/transport/stream.hpp"

namespace dpsd::io::transport {

class WsStream final : public LayeredStream {
 public:
  struct Options {
    std::string host;  // the Host header: "name", or "name:port" when the port is not 443
    std::string path = "/$iothub/websocket";
    std::string subprotocol = "mqtt";
  };
  // Bounds on what this stream holds: frames waiting for the stream below (beyond it, write()
  // takes nothing: back-pressure), and unwrapped data (none is read from below until the
  // caller took it).
  static constexpr std::size_t kWireHighWater = std::size_t{64} * 1024;

  WsStream(std::unique_ptr<Stream> below, Options options);

  // The upgrade: sends the request, checks the answer. Frames that came right behind the 101
  // are decoded at once (a bad one fails the upgrade); their data waits for read().
  Progress step() override;
  std::uint32_t handshake_events() const override;

  IoResult read(char* data, std::size_t size) override;
  IoResult write(const char* data, std::size_t size) override;
  std::uint32_t wanted_events(bool reading, bool writing) const override;
  void shutdown() override;  // a close frame (1000), then the stream below's goodbye
  bool has_pending_output() const override { return !wire_out_.empty(); }
  bool has_buffered_input() const override { return pending_at_ < pending_.size(); }

 private:
  Progress fail(Close failure);
  bool take(const char* data, std::size_t n);  // false: a protocol error, close_ says which
  bool flush();                                // false: the stream below ended
  void closed_below() { close_ = below_->close_reason(); }

  Options options_;
  std::string request_;  // the upgrade request
  std::size_t sent_ = 0;
  std::optional<core::ws::UpgradeResponseParser> answer_;
  core::ws::FrameDecoder decoder_;
  std::string wire_out_;  // frames for below: data, pongs, the echo of a close
  std::string pending_;   // unwrapped server data not read yet, from pending_at_ on
  std::size_t pending_at_ = 0;
  bool close_received_ = false;
  Close peer_close_;  // what the server's close frame said, reported once wire_out_ is out
};

}  // namespace dpsd::io::transport
