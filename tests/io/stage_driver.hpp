#pragma once
// For the transport stage tests (test_tcp_connector, test_proxy_tunnel, test_tls_stream,
// test_ws_stream, test_relay): a stage needs no event loop to be tested, only its socket polled
// for the events it asks for. Every wait is bounded; what did not happen is the caller's
// message.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "io/transport/stream.hpp"
#include "io/transport/tcp_connector.hpp"
#include "io/unique_fd.hpp"

namespace dpsd::test {

namespace transport = io::transport;
using io::UniqueFd;

inline sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

// A listening 127.0.0.1 socket on a port the kernel picks; the port in *port.
inline UniqueFd listen_on_loopback(std::uint16_t* port, int backlog = 8) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address = loopback(0);
  socklen_t length = sizeof address;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(fd.get(), backlog) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return UniqueFd();
  }
  *port = ntohs(address.sin_port);
  return fd;
}

// A connected, non-blocking TCP stream to 127.0.0.1:port (null when the connect failed).
inline std::unique_ptr<transport::TcpStream> tcp_to(std::uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in address = loopback(port);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    return nullptr;
  }
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  return std::make_unique<transport::TcpStream>(std::move(fd));
}

inline bool wait_for(int fd, std::uint32_t events, std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0 || events == 0) return false;
  pollfd p{fd, static_cast<short>(events), 0};
  return ::poll(&p, 1, static_cast<int>(left.count())) > 0;
}

// Steps a handshake until it is Done or Failed; Pending when the deadline passed first (or it
// asked for no event at all, which would be a stage waiting on nothing).
inline transport::Progress drive(transport::Handshake& handshake, int fd,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const transport::Progress progress = handshake.step();
    if (progress != transport::Progress::Pending) return progress;
    if (!wait_for(fd, handshake.handshake_events(), deadline)) return progress;
  }
}

// Writes all of `bytes`; false when the stream closed or the deadline passed first.
inline bool write_all(transport::Stream& stream, std::string_view bytes,
                      std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!bytes.empty() || stream.has_pending_output()) {
    const transport::IoResult out = stream.write(bytes.data(), bytes.size());
    if (out.status == transport::IoResult::Status::Closed) return false;
    bytes.remove_prefix(out.bytes);
    if (out.bytes == 0 && !wait_for(stream.fd(), stream.wanted_events(false, true), deadline)) {
      if (!stream.has_pending_output() && bytes.empty()) return true;
      return false;
    }
  }
  return true;
}

// What read() returned until `want` bytes came, the stream closed (*closed set) or the
// deadline passed.
inline std::string read_some(transport::Stream& stream, std::size_t want, bool* closed = nullptr,
                             std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string in;
  if (closed != nullptr) *closed = false;
  char buffer[16384];
  while (in.size() < want) {
    const transport::IoResult got = stream.read(buffer, sizeof buffer);
    if (got.status == transport::IoResult::Status::Ok) {
      in.append(buffer, got.bytes);
      continue;
    }
    if (got.status == transport::IoResult::Status::Closed) {
      if (closed != nullptr) *closed = true;
      break;
    }
    // Reading may need the socket writable (pending frames, TLS key updates).
    const std::uint32_t events = stream.wanted_events(true, stream.has_pending_output());
    if (!wait_for(stream.fd(), events, deadline)) break;
  }
  return in;
}

}  // namespace dpsd::test
