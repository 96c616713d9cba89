#pragma once
// Asynchronous name resolution for the one sd-event loop.
//
// The design named sd-resolve, but libsystemd does not export it: sd-resolve is internal to
// systemd (Debian 12's libsystemd-dev ships no sd-resolve.h and libsystemd.so.0 has no
// sd_resolve_* symbols). So a lookup runs glibc's getaddrinfo() -- which honours nsswitch,
// /etc/hosts and resolv.conf like every other program on the gateway -- on a short-lived
// detached thread that reports back through an eventfd the loop watches. That is what
// sd-resolve does internally too, minus the thread pool. The thread shares only a small heap
// state with the query, so destroying a query mid-lookup (connect timeout, shutdown) never
// blocks the loop: the thread finishes on its own and its answer is dropped.
#include <sys/socket.h>
#include <systemd/sd-event.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/expected.hpp"
#include "io/event_loop.hpp"

namespace dpsd::io {

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
  // "127.0.0.1:8883" or "[::1]:8883", for logs and error texts.
  std::string to_string() const;
};

// The address when `host` is a literal IPv4 or IPv6 address (no DNS needed), else nullopt.
std::optional<SocketAddress> parse_ip_literal(const std::string& host, std::uint16_t port);

class DnsQuery {
 public:
  // TCP addresses in getaddrinfo's order (RFC 6724), or getaddrinfo's error text.
  using Handler = std::function<void(Expected<std::vector<SocketAddress>> result)>;

  // Starts the lookup. The handler runs later from the loop: never from start(), never after
  // the query is destroyed, at most once. It may destroy the query. Fails only when the
  // eventfd, the event source or the thread cannot be created.
  static Expected<std::unique_ptr<DnsQuery>> start(sd_event* event, const std::string& host,
                                                   std::uint16_t port, Handler handler);
  struct Shared;  // defined in the .cpp; public only so the thread's code can name it

 private:
  struct Token {};  // only start() can construct a query, yet std::make_unique can call it

 public:
  DnsQuery(Token, std::shared_ptr<Shared> shared, Handler handler);
  ~DnsQuery();
  DnsQuery(const DnsQuery&) = delete;
  DnsQuery& operator=(const DnsQuery&) = delete;

 private:
  static int on_done(sd_event_source* source, int fd, uint32_t revents, void* userdata);

  std::shared_ptr<Shared> shared_;
  Handler handler_;
  EventSourcePtr source_;
};

}  // namespace dpsd::io
