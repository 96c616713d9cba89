#pragma once
// The last stage: the Unix socket libmosquitto connects to, and the one pump that carries bytes
// between it and the top stream (TLS, or WebSocket over TLS), whatever the stages below.
//
// The socket is created only when asked (after the server proved its identity), in a private
// directory opened through an fd (io::open_private_dir), and takes exactly one client, which
// must be this very process (SO_PEERCRED): another process of the same user must not borrow the
// authenticated channel. Every byte from the server passes core::MqttInboundGate before
// libmosquitto may see it. Both directions are bounded (16 KiB each): a side that stops
// reading stops the other side from being read (back-pressure) instead of growing memory.
#include <systemd/sd-event.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/expected.hpp"
#include "core/mqtt_inbound_gate.hpp"
#include "io/transport/io_watch.hpp"
#include "io/transport/stream.hpp"
#include "io/unique_fd.hpp"

namespace dpsd::io::transport {

// One direction of the relay.
class RelayBuffer {
 public:
  static constexpr std::size_t kCapacity = std::size_t{16} * 1024;

  bool empty() const { return begin_ == end_; }
  const char* data() const { return bytes_.data() + begin_; }
  std::size_t size() const { return end_ - begin_; }
  // Free space at the tail; moves pending bytes to the front first. SSL_write tolerates that
  // because SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER is set and a retry only ever gets longer.
  char* space() {
    if (begin_ > 0) {
      std::memmove(bytes_.data(), bytes_.data() + begin_, size());
      end_ -= begin_;
      begin_ = 0;
    }
    return bytes_.data() + end_;
  }
  // Room for more, counting what space() reclaims at the front: a few bytes the gate holds
  // back must not leave a buffer that looks full and is never read again.
  std::size_t space_size() const { return kCapacity - size(); }
  void produced(std::size_t n) { end_ += n; }
  void consumed(std::size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }

 private:
  std::array<char, kCapacity> bytes_{};
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

class Relay {
 public:
  // Called once, when either side ends or fails; it may destroy the relay.
  using ClosedHandler = std::function<void(const Close& why)>;

  Relay(sd_event* event, std::unique_ptr<Stream> top, ClosedHandler on_closed);
  ~Relay();  // closes both sides and removes the socket file
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // What the top stream already holds without its socket (WebSocket frames that came with the
  // upgrade) goes through the gate now, so a refusal comes before anyone is told to connect.
  std::optional<Close> take_buffered_input();
  // Creates <socket_dir>/mqtt-<pid>-<n>.sock and listens; returns its path. The error is the
  // tail of a "relay socket: …" message.
  Expected<std::string> listen(const std::filesystem::path& socket_dir);

 private:
  void accept_client();
  void pump();
  void update_interest();
  void finish(Close why);
  void remove_socket_file();
  // Held-back bytes are the start of a header the gate has not judged yet.
  std::size_t down_ready() const { return down_.size() - gate_.held_back(); }

  sd_event* event_;
  std::unique_ptr<Stream> top_;
  ClosedHandler on_closed_;

  RelayBuffer up_;    // client (libmosquitto) -> server
  RelayBuffer down_;  // server -> client
  core::MqttInboundGate gate_;
  bool client_eof_ = false;
  std::optional<Close> server_closed_;  // the server ended in order; deliver, then report
  bool finished_ = false;

  std::string socket_path_;
  std::string socket_name_;  // socket_path_'s last component, created in socket_dir_fd_
  bool socket_file_exists_ = false;
  UniqueFd socket_dir_fd_;  // the checked private directory, while the socket file exists
  UniqueFd listener_;
  UniqueFd client_;
  // Declared last: destroyed first, so no callback runs on a half-destroyed relay and no
  // source watches a closed fd.
  IoWatch listen_watch_;
  IoWatch client_watch_;
  IoWatch top_watch_;
};

}  // namespace dpsd::io::transport
