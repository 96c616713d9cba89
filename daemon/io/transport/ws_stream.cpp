#include "io/transport/ws_stream.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace dpsd::io::transport {
namespace {

// WebSocket keys and masks need not be secret, only unpredictable to the network (RFC 6455
// 10.3: masking stops proxies from being poisoned with attacker-chosen bytes).
template <std::size_t N>
std::array<std::uint8_t, N> random_bytes() {
  std::array<std::uint8_t, N> out{};
  if (RAND_bytes(out.data(), static_cast<int>(N)) != 1) {
    out.fill(0x5a);  // only when the DRBG cannot seed; a fixed mask still yields valid frames
  }
  return out;
}

}  // namespace

WsStream::WsStream(std::unique_ptr<Stream> below, Options options)
    : LayeredStream(std::move(below)), options_(std::move(options)) {}

Progress WsStream::fail(Close failure) {
  failure.stage = Stage::WebSocket;
  close_ = std::move(failure);
  return Progress::Failed;
}

Progress WsStream::step() {
  if (!answer_) {
    const std::string key = core::ws::make_key(random_bytes<16>());
    request_ = core::ws::build_upgrade_request({.host = options_.host,
                                                .path = options_.path,
                                                .key = key,
                                                .subprotocol = options_.subprotocol});
    answer_.emplace(key, options_.subprotocol);
  }
  while (sent_ < request_.size()) {
    const IoResult out = below_->write(request_.data() + sent_, request_.size() - sent_);
    if (out.status == IoResult::Status::WouldBlock) return Progress::Pending;
    if (out.status == IoResult::Status::Closed) return fail(below_->close_reason());
    sent_ += out.bytes;
  }
  std::array<char, 4096> buffer{};
  for (;;) {
    const IoResult in = below_->read(buffer.data(), buffer.size());
    if (in.status == IoResult::Status::WouldBlock) return Progress::Pending;
    if (in.status == IoResult::Status::Closed) return fail(below_->close_reason());
    const auto state = answer_->feed(buffer.data(), in.bytes);
    if (state == core::ws::UpgradeResponseParser::State::NeedMore) continue;
    if (state == core::ws::UpgradeResponseParser::State::Failed) {
      return fail(Close(CloseReason::Refused, Stage::Relay, answer_->error()));
    }
    // Frames the server sent right behind its 101 (a CONNACK cannot come yet, but a ping
    // could) belong to the stream.
    const std::string leftover = answer_->leftover();
    answer_.reset();
    request_.clear();
    if (!take(leftover.data(), leftover.size())) return fail(close_);
    if (!flush()) return fail(close_);
    return Progress::Done;
  }
}

std::uint32_t WsStream::handshake_events() const {
  const bool sending = sent_ < request_.size();
  return below_->wanted_events(!sending, sending);
}

bool WsStream::take(const char* data, std::size_t n) {
  core::ws::FrameDecoder::Events events;
  if (auto status = decoder_.feed(data, n, events); !status) {
    close_ = Close(CloseReason::ProtocolError, Stage::Relay, status.error());
    return false;
  }
  if (pending_.empty()) {
    pending_ = std::move(events.data);
    pending_at_ = 0;
  } else {
    pending_ += events.data;
  }
  for (const std::string& ping : events.pings) {
    core::ws::encode_frame(core::ws::Opcode::Pong, ping, random_bytes<4>(), wire_out_);
  }
  if (events.close_received && !close_received_) {
    close_received_ = true;
    // Echo the status code (RFC 6455 5.5.1); the server then closes TCP.
    std::string body;
    if (events.close_code != 1005) {
      body += static_cast<char>(events.close_code >> 8);
      body += static_cast<char>(events.close_code & 0xff);
    }
    core::ws::encode_frame(core::ws::Opcode::Close, body, random_bytes<4>(), wire_out_);
    if (events.close_code == 1000 || events.close_code == 1005) {
      peer_close_ = Close(CloseReason::PeerClosed);
    } else {
      std::string detail = std::to_string(events.close_code);
      if (!events.close_reason.empty()) detail += " " + events.close_reason;
      peer_close_ = Close(CloseReason::PeerClosedWithCode, Stage::Relay, std::move(detail));
    }
  }
  return true;
}

bool WsStream::flush() {
  while (!wire_out_.empty()) {
    const IoResult out = below_->write(wire_out_.data(), wire_out_.size());
    if (out.status == IoResult::Status::WouldBlock) return true;
    if (out.status == IoResult::Status::Closed) {
      closed_below();
      return false;
    }
    wire_out_.erase(0, out.bytes);
  }
  return true;
}

IoResult WsStream::read(char* data, std::size_t size) {
  for (;;) {
    if (pending_at_ < pending_.size()) {
      const std::size_t n = std::min(size, pending_.size() - pending_at_);
      std::memcpy(data, pending_.data() + pending_at_, n);
      pending_at_ += n;
      if (pending_at_ == pending_.size()) {
        pending_.clear();
        pending_at_ = 0;
      }
      return IoResult::ok(n);
    }
    if (close_received_) {
      // The server's close, once our echo is out: nothing may follow it (RFC 6455 5.5.1).
      if (!flush()) return IoResult::closed();
      if (!wire_out_.empty()) return IoResult::would_block();
      close_ = peer_close_;
      return IoResult::closed();
    }
    std::array<char, std::size_t{16} * 1024>
        buffer;  // NOLINT(cppcoreguidelines-pro-type-member-init)
    const IoResult in = below_->read(buffer.data(), buffer.size());
    if (in.status == IoResult::Status::WouldBlock) return in;
    if (in.status == IoResult::Status::Closed) {
      closed_below();
      return in;
    }
    // Answer pings now rather than on the next writable event.
    if (!take(buffer.data(), in.bytes) || !flush()) return IoResult::closed();
  }
}

IoResult WsStream::write(const char* data, std::size_t size) {
  if (!flush()) return IoResult::closed();
  // After the server's close frame nothing but our reply may follow (RFC 6455 5.5.1).
  if (size == 0 || close_received_ || wire_out_.size() >= kWireHighWater) {
    return size == 0 ? IoResult::ok(0) : IoResult::would_block();
  }
  core::ws::encode_frame(core::ws::Opcode::Binary, std::string_view(data, size), random_bytes<4>(),
                         wire_out_);
  if (!flush()) return IoResult::closed();
  return IoResult::ok(size);
}

std::uint32_t WsStream::wanted_events(bool reading, bool /*writing*/) const {
  // Writing needs the socket only for frames already made: write() frames at once, and after
  // the server's close it takes nothing more, which must not keep EPOLLOUT armed.
  return below_->wanted_events(reading && !close_received_, !wire_out_.empty());
}

void WsStream::shutdown() {
  // Best effort, like close_notify: a close frame (1000) and we are gone.
  std::string bye;
  core::ws::encode_frame(core::ws::Opcode::Close, std::string_view("\x03\xe8", 2),
                         random_bytes<4>(), bye);
  below_->write(bye.data(), bye.size());
  below_->shutdown();
}

}  // namespace dpsd::io::transport
