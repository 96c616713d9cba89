#include "io/transport/tcp_connector.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>

#include "core/errno_text.hpp"

namespace dpsd::io::transport {
namespace {

using core::errno_text;

bool would_block(int error) {
  return error == EAGAIN || error == EWOULDBLOCK || error == EINTR;
}

}  // namespace

IoResult TcpStream::read(char* data, std::size_t size) {
  const ssize_t n = ::recv(fd_.get(), data, size, 0);
  if (n > 0) return IoResult::ok(static_cast<std::size_t>(n));
  if (n == 0) {
    close_ = Close(CloseReason::PeerClosed);
    return IoResult::closed();
  }
  return fail(errno);
}

IoResult TcpStream::write(const char* data, std::size_t size) {
  if (size == 0) return IoResult::ok(0);
  const ssize_t n = ::send(fd_.get(), data, size, MSG_NOSIGNAL);
  if (n >= 0) return IoResult::ok(static_cast<std::size_t>(n));
  return fail(errno);
}

IoResult TcpStream::fail(int error) {
  if (would_block(error)) return IoResult::would_block();
  // EPIPE: the server is gone, in order as far as we can tell; its words are kept for the
  // stages that quote errno (a TLS handshake cut short).
  const CloseReason reason = error == EPIPE        ? CloseReason::PeerClosed
                             : error == ECONNRESET ? CloseReason::Reset
                                                   : CloseReason::Lost;
  close_ = Close(reason, Stage::Relay, errno_text(error));
  return IoResult::closed();
}

std::uint32_t TcpStream::wanted_events(bool reading, bool writing) const {
  return (reading ? EPOLLIN : 0U) | (writing ? EPOLLOUT : 0U);
}

std::vector<SocketAddress> interleave_families(const std::vector<SocketAddress>& addresses) {
  if (addresses.empty()) return {};
  const int first_family = addresses.front().family();
  std::vector<SocketAddress> first;
  std::vector<SocketAddress> other;
  for (const SocketAddress& address : addresses) {
    (address.family() == first_family ? first : other).push_back(address);
  }
  std::vector<SocketAddress> out;
  out.reserve(addresses.size());
  for (std::size_t i = 0; i < first.size() || i < other.size(); ++i) {
    if (i < first.size()) out.push_back(first[i]);
    if (i < other.size()) out.push_back(other[i]);
  }
  return out;
}

std::string host_port(const std::string& host, std::uint16_t port) {
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

TcpConnector::TcpConnector(sd_event* event, Options options, Handler handler)
    : event_(event),
      options_(std::move(options)),
      handler_(std::move(handler)),
      watch_(event, [this] { on_writable(); }),
      timer_(event,
             [this] {
               fail(Close::timeout(Stage::Connect, options_.timeout,
                                   host_port(options_.host, options_.port)));
             }),
      attempt_timer_(event, [this] { on_attempt_timeout(); }) {}

void TcpConnector::start() {
  timer_.arm(options_.timeout);
  const std::string& host = options_.host;
  if (auto literal = parse_ip_literal(host, options_.port)) return connect_to({*literal});
  auto query = DnsQuery::start(
      event_, host, options_.port,
      [this](Expected<std::vector<SocketAddress>> result) { on_resolved(std::move(result)); });
  if (!query) {
    return fail(Close(CloseReason::SetupFailed, Stage::Dns, query.error(), host));
  }
  dns_ = std::move(*query);
}

void TcpConnector::on_resolved(Expected<std::vector<SocketAddress>> result) {
  dns_.reset();  // we are inside its handler; DnsQuery allows that
  if (!result || result->empty()) {
    return fail(Close(CloseReason::NameNotResolved, Stage::Dns,
                      result ? "no addresses" : result.error(), options_.host));
  }
  connect_to(interleave_families(*result));
}

void TcpConnector::connect_to(std::vector<SocketAddress> addresses) {
  if (!timer_.armed()) timer_.arm(options_.timeout);
  addresses_ = std::move(addresses);
  next_ = 0;
  last_failure_ =
      Close(CloseReason::Unreachable, Stage::Connect, "no usable address", options_.host);
  connect_next();
}

// Each path ends in exactly one of: waiting for a connect in progress, succeed(), fail().
void TcpConnector::connect_next() {
  watch_.stop();
  attempt_timer_.cancel();
  fd_.reset();
  while (next_ < addresses_.size()) {
    const SocketAddress& address = addresses_[next_++];
    peer_ = address.to_string();
    UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd && ::connect(fd.get(), address.get(), address.length) == 0) {
      fd_ = std::move(fd);
      return succeed();
    }
    if (!fd || errno != EINPROGRESS) {
      last_failure_.where = peer_;
      last_failure_.detail = errno_text(errno);
      continue;
    }
    fd_ = std::move(fd);
    if (auto status = watch_.watch(fd_.get(), EPOLLOUT); !status) {
      return fail(Close(CloseReason::SetupFailed, Stage::Connect, status.error(), peer_));
    }
    if (next_ < addresses_.size()) attempt_timer_.arm(options_.attempt_timeout);
    return;
  }
  fail(last_failure_);
}

void TcpConnector::on_writable() {
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error, &length) < 0) error = errno;
  if (error == 0) return succeed();
  last_failure_.where = peer_;
  last_failure_.detail = errno_text(error);
  connect_next();
}

void TcpConnector::on_attempt_timeout() {
  last_failure_.where = peer_;
  last_failure_.detail =
      "timed out after " + std::to_string(options_.attempt_timeout.count()) + " ms";
  connect_next();
}

void TcpConnector::succeed() {
  watch_.stop();
  timer_.cancel();
  attempt_timer_.cancel();
  // MQTT packets are small and latency-bound (PINGREQ, PUBACK); Nagle only delays them.
  const int one = 1;
  ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto stream = std::make_unique<TcpStream>(std::move(fd_));
  Handler handler = std::move(handler_);
  handler(std::move(stream), {});  // may destroy us: nothing after this line
}

void TcpConnector::fail(Close failure) {
  dns_.reset();
  watch_.stop();
  timer_.cancel();
  attempt_timer_.cancel();
  fd_.reset();
  Handler handler = std::move(handler_);
  handler(nullptr, std::move(failure));  // may destroy us: nothing after this line
}

}  // namespace dpsd::io::transport
