#include "core/websocket.hpp"

#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <utility>

#include "core/base64.hpp"
#include "core/http_head.hpp"

namespace dpsd::core::ws {
namespace {

using http::lower;

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r'))
    text.remove_suffix(1);
  return text;
}

// Does a comma-separated header value (Connection: keep-alive, Upgrade) contain token,
// case-insensitively?
bool has_token(std::string_view value, std::string_view token) {
  const std::string wanted = lower(token);
  while (!value.empty()) {
    const std::size_t comma = value.find(',');
    if (lower(trim(value.substr(0, comma))) == wanted) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

std::string make_key(const std::array<std::uint8_t, 16>& nonce) {
  return base64_encode(std::span<const std::uint8_t>(nonce.data(), nonce.size()));
}

std::string accept_for_key(std::string_view key) {
  std::string text(key);
  text += kGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return base64_encode(std::span<const std::uint8_t>(digest, sizeof digest));
}

std::string build_upgrade_request(const UpgradeRequest& request) {
  std::string out;
  out += "GET " + request.path + " HTTP/1.1\r\n";
  out += "Host: " + request.host + "\r\n";
  out += "Upgrade: websocket\r\n";
  out += "Connection: Upgrade\r\n";
  out += "Sec-WebSocket-Key: " + request.key + "\r\n";
  out += "Sec-WebSocket-Version: 13\r\n";
  out += "Sec-WebSocket-Protocol: " + request.subprotocol + "\r\n";
  out += "\r\n";
  return out;
}

UpgradeResponseParser::UpgradeResponseParser(std::string key, std::string subprotocol)
    : HeadAnswer({.max_bytes = kMaxHeaderBytes}),
      key_(std::move(key)),
      subprotocol_(std::move(subprotocol)) {}

UpgradeResponseParser::State UpgradeResponseParser::feed(const char* data, std::size_t n) {
  if (decided(data, n)) return state_;
  switch (head_.feed(data, n)) {
    case http::ResponseHeadParser::State::NeedMore:
      return state_;
    case http::ResponseHeadParser::State::Done:
      return check(head_.head());
    case http::ResponseHeadParser::State::Failed:
      break;
  }
  switch (head_.problem()) {
    case http::HeadProblem::NotHttp:
    case http::HeadProblem::BadStatusLine:
      return fail("WebSocket: not an HTTP response: " + head_.problem_line());
    case http::HeadProblem::TooLong:
    case http::HeadProblem::TooManyHeaders:
      return fail("WebSocket: upgrade response too long");
    default:
      return fail("WebSocket: malformed header line: " + head_.problem_line());
  }
}

UpgradeResponseParser::State UpgradeResponseParser::check(const http::ResponseHead& head) {
  if (head.status != 101) return fail("WebSocket: upgrade refused: " + head.status_text());
  const auto any_has = [&](std::string_view name, std::string_view token) {
    const auto values = head.values(name);
    return std::any_of(values.begin(), values.end(),
                       [&](std::string_view value) { return has_token(value, token); });
  };
  if (!any_has("upgrade", "websocket")) {
    return fail("WebSocket: response lacks Upgrade: websocket");
  }
  if (!any_has("connection", "upgrade")) {
    return fail("WebSocket: response lacks Connection: Upgrade");
  }
  // Exactly one answer each: two accept values or two protocols are not an answer.
  const auto accept = head.values("sec-websocket-accept");
  if (accept.size() != 1 || accept.front() != accept_for_key(key_)) {
    return fail("WebSocket: bad Sec-WebSocket-Accept");
  }
  // Exact match: the server must echo one of the protocols we offered, byte for byte
  // (RFC 6455 4.1); mosquitto closes an upper-case "MQTT", so accepting one would only defer
  // the failure.
  const auto protocol = head.values("sec-websocket-protocol");
  if (protocol.size() != 1 || protocol.front() != subprotocol_) {
    return fail("WebSocket: server did not accept subprotocol " + subprotocol_);
  }
  state_ = State::Done;
  return state_;
}

void encode_frame(Opcode opcode, std::string_view payload, const std::array<std::uint8_t, 4>& mask,
                  std::string& out) {
  const std::size_t n = payload.size();
  out.reserve(out.size() + n + 14);
  out += static_cast<char>(0x80 | static_cast<std::uint8_t>(opcode));
  if (n < 126) {
    out += static_cast<char>(0x80 | n);
  } else if (n <= 0xffff) {
    out += static_cast<char>(0x80 | 126);
    out += static_cast<char>((n >> 8) & 0xff);
    out += static_cast<char>(n & 0xff);
  } else {
    out += static_cast<char>(0x80 | 127);
    for (int shift = 56; shift >= 0; shift -= 8) {
      out += static_cast<char>((static_cast<std::uint64_t>(n) >> shift) & 0xff);
    }
  }
  for (std::uint8_t m : mask) out += static_cast<char>(m);
  for (std::size_t i = 0; i < n; ++i) {
    out += static_cast<char>(static_cast<std::uint8_t>(payload[i]) ^ mask[i % 4]);
  }
}

Status FrameDecoder::feed(const char* data, std::size_t n, Events& events) {
  buffer_.append(data, n);
  for (;;) {
    bool consumed = false;
    Status status = parse_one(events, consumed);
    if (!status) {
      buffer_.clear();
      return status;
    }
    if (!consumed) return ok_status();
  }
}

Status FrameDecoder::parse_one(Events& events, bool& consumed_frame) {
  consumed_frame = false;
  const auto* bytes = reinterpret_cast<const std::uint8_t*>(buffer_.data());
  const std::size_t available = buffer_.size();
  if (available < 2) return ok_status();

  const bool fin = (bytes[0] & 0x80) != 0;
  const std::uint8_t reserved = bytes[0] & 0x70;
  const std::uint8_t op = bytes[0] & 0x0f;
  const bool masked = (bytes[1] & 0x80) != 0;
  std::uint64_t length = bytes[1] & 0x7f;

  // Checks that need only the first two bytes come first, so garbage fails fast instead of
  // waiting for a length it announces.
  if (closed_) return Error{"WebSocket: frame after close"};
  if (reserved != 0) return Error{"WebSocket: reserved bits set (no extension was negotiated)"};
  if (masked) return Error{"WebSocket: server sent a masked frame"};
  const bool control = (op & 0x08) != 0;
  if (op != 0x0 && op != 0x1 && op != 0x2 && op != 0x8 && op != 0x9 && op != 0xA) {
    return Error{"WebSocket: unknown opcode " + std::to_string(op)};
  }
  if (control && (!fin || length > 125)) {
    return Error{"WebSocket: control frame fragmented or longer than 125 bytes"};
  }

  std::size_t header = 2;
  if (length == 126) {
    if (available < 4) return ok_status();
    length = (static_cast<std::uint64_t>(bytes[2]) << 8) | bytes[3];
    header = 4;
  } else if (length == 127) {
    if (available < 10) return ok_status();
    length = 0;
    for (int i = 0; i < 8; ++i) length = (length << 8) | bytes[2 + i];
    if ((length >> 63) != 0) return Error{"WebSocket: frame length has the top bit set"};
    header = 10;
  }

  if (!control) {
    if (op == 0x0 && !in_message_) return Error{"WebSocket: continuation without a message"};
    if (op != 0x0 && in_message_) return Error{"WebSocket: new message inside a fragmented one"};
    const std::size_t so_far = op == 0x0 ? message_size_ : 0;
    if (length > max_message_ || so_far + length > max_message_) {
      return Error{"WebSocket: message larger than " + std::to_string(max_message_) + " bytes"};
    }
  }
  if (available - header < length) return ok_status();  // wait for the rest

  const std::string_view payload(buffer_.data() + header, static_cast<std::size_t>(length));
  switch (static_cast<Opcode>(op)) {
    case Opcode::Continuation:
    case Opcode::Text:
    case Opcode::Binary:
      events.data.append(payload);
      if (fin) {
        in_message_ = false;
        message_size_ = 0;
      } else {
        in_message_ = true;
        message_size_ = (op == 0x0 ? message_size_ : 0) + payload.size();
      }
      break;
    case Opcode::Ping:
      events.pings.emplace_back(payload);
      break;
    case Opcode::Pong:
      break;  // we never ping; an unsolicited pong is allowed and means nothing (RFC 6455 5.5.3)
    case Opcode::Close: {
      if (payload.size() == 1) return Error{"WebSocket: close frame with a 1-byte body"};
      closed_ = true;
      events.close_received = true;
      if (payload.size() >= 2) {
        events.close_code = static_cast<std::uint16_t>(
            (static_cast<std::uint8_t>(payload[0]) << 8) | static_cast<std::uint8_t>(payload[1]));
        events.close_reason = http::printable(payload.substr(2));
      }
      break;
    }
  }
  buffer_.erase(0, header + static_cast<std::size_t>(length));
  consumed_frame = !closed_;  // after a close, nothing more is parsed
  return ok_status();
}

}  // namespace dpsd::core::ws
