#pragma once
// The first stage: a name or literal address to a connected, non-blocking TCP socket. Names are
// resolved by io::DnsQuery; the addresses are tried one after the other in Happy Eyeballs order
// (RFC 8305 section 4: the families alternate, so a dead IPv6 route costs one attempt, not
// every IPv6 address). One budget covers DNS and every attempt; an attempt on an address with
// more behind it gets at most attempt_timeout, so a silently dropping address does not eat the
// whole budget. The last address may use what is left.
#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/dns_resolver.hpp"
#include "io/event_loop.hpp"
#include "io/transport/io_watch.hpp"
#include "io/transport/stream.hpp"
#include "io/unique_fd.hpp"

namespace dpsd::io::transport {

// A connected socket as a Stream: recv/send (MSG_NOSIGNAL: a library must not raise SIGPIPE),
// errno turned into a CloseReason.
class TcpStream final : public Stream {
 public:
  explicit TcpStream(UniqueFd fd) : fd_(std::move(fd)) {}
  IoResult read(char* data, std::size_t size) override;
  IoResult write(const char* data, std::size_t size) override;
  std::uint32_t wanted_events(bool reading, bool writing) const override;
  void shutdown() override {}  // TCP's FIN comes with close(); nothing to say first
  int fd() const override { return fd_.get(); }
  const Close& close_reason() const override { return close_; }

 private:
  IoResult fail(int error);

  UniqueFd fd_;
  Close close_;
};

// RFC 8305 section 4: the resolver's order (RFC 6724), the families interleaved starting with
// the family of the first address.
std::vector<SocketAddress> interleave_families(const std::vector<SocketAddress>& addresses);

// "host:port", "[::1]:port": how messages name a host and port.
std::string host_port(const std::string& host, std::uint16_t port);

class TcpConnector {
 public:
  struct Options {
    std::string host;  // a name or a literal address
    std::uint16_t port = 0;
    std::chrono::milliseconds timeout{10000};         // DNS and every attempt together
    std::chrono::milliseconds attempt_timeout{2000};  // one address while others are left
  };
  // stream is null when the connection failed; failure then says why (Stage::Dns or
  // Stage::Connect), with the last address's error when every address failed.
  using Handler = std::function<void(std::unique_ptr<TcpStream> stream, Close failure)>;

  TcpConnector(sd_event* event, Options options, Handler handler);
  TcpConnector(const TcpConnector&) = delete;
  TcpConnector& operator=(const TcpConnector&) = delete;

  // Resolves the name (a literal needs no DNS) and connects. The handler runs once, possibly
  // from inside start() when the kernel answers at once; it may destroy the connector.
  void start();
  // Connects to these addresses, in this order, under the overall timeout (start() after DNS).
  void connect_to(std::vector<SocketAddress> addresses);
  // The address being tried or tried last ("127.0.0.1:8883"); empty before the first.
  const std::string& peer() const { return peer_; }

 private:
  void on_resolved(Expected<std::vector<SocketAddress>> result);
  void connect_next();
  void on_writable();
  void on_attempt_timeout();
  void succeed();
  void fail(Close failure);

  sd_event* event_;
  Options options_;
  Handler handler_;
  std::vector<SocketAddress> addresses_;
  std::size_t next_ = 0;
  std::string peer_;
  Close last_failure_;
  UniqueFd fd_;  // the attempt in progress
  std::unique_ptr<DnsQuery> dns_;
  IoWatch watch_;
  Timer timer_;
  Timer attempt_timer_;
};

}  // namespace dpsd::io::transport
