#include "io/dns_resolver.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

#include "io/unique_fd.hpp"

namespace dpsd::io {

std::string SocketAddress::to_string() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&storage);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (family() == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&storage);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "(address family " + std::to_string(family()) + ")";
}

namespace {

std::vector<SocketAddress> copy_addresses(const addrinfo* list) {
  std::vector<SocketAddress> out;
  for (const addrinfo* ai = list; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_addrlen > sizeof(sockaddr_storage)) continue;
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) continue;
    SocketAddress address;
    std::memcpy(&address.storage, ai->ai_addr, ai->ai_addrlen);
    address.length = ai->ai_addrlen;
    out.push_back(address);
  }
  return out;
}

addrinfo tcp_hints(int flags) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  // No AI_ADDRCONFIG: in containers and on gateways whose only interface is still coming up it
  // hides even "localhost"; an unreachable family fails fast at connect() instead.
  hints.ai_flags = AI_NUMERICSERV | flags;
  return hints;
}

}  // namespace

std::optional<SocketAddress> parse_ip_literal(const std::string& host, std::uint16_t port) {
  // AI_NUMERICHOST never touches the network, so this is safe on the loop thread.
  const addrinfo hints = tcp_hints(AI_NUMERICHOST);
  addrinfo* list = nullptr;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list) != 0) {
    return std::nullopt;
  }
  auto addresses = copy_addresses(list);
  freeaddrinfo(list);
  if (addresses.empty()) return std::nullopt;
  return addresses.front();
}

// Owned jointly by the query and its thread; whichever lets go last closes the eventfd.
struct DnsQuery::Shared {
  explicit Shared(UniqueFd fd) : done_fd(std::move(fd)) {}
  UniqueFd done_fd;  // the thread writes 1 once the answer below is stored
  std::mutex mutex;
  int rc = 0;
  int saved_errno = 0;
  std::vector<SocketAddress> addresses;
};

namespace {

void lookup(const std::shared_ptr<DnsQuery::Shared>& shared, const std::string& host,
            const std::string& service);

}  // namespace

Expected<std::unique_ptr<DnsQuery>> DnsQuery::start(sd_event* event, const std::string& host,
                                                    std::uint16_t port, Handler handler) {
  UniqueFd done_fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!done_fd) return Error{std::string("eventfd: ") + std::strerror(errno)};
  const int fd = done_fd.get();
  auto shared = std::make_shared<Shared>(std::move(done_fd));
  auto query = std::make_unique<DnsQuery>(Token{}, shared, std::move(handler));

  sd_event_source* raw = nullptr;
  const int rc = sd_event_add_io(event, &raw, fd, EPOLLIN, &DnsQuery::on_done, query.get());
  if (rc < 0) return Error{std::string("sd_event_add_io: ") + std::strerror(-rc)};
  query->source_.reset(raw);

  try {
    std::thread([shared, host, service = std::to_string(port)] {
      lookup(shared, host, service);
    }).detach();
  } catch (const std::system_error& e) {
    return Error{std::string("cannot start resolver thread: ") + e.what()};
  }
  return query;
}

namespace {

void lookup(const std::shared_ptr<DnsQuery::Shared>& shared, const std::string& host,
            const std::string& service) {
  const addrinfo hints = tcp_hints(0);
  addrinfo* list = nullptr;
  const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &list);
  const int saved_errno = errno;
  std::vector<SocketAddress> addresses;
  if (rc == 0) {
    addresses = copy_addresses(list);
    freeaddrinfo(list);
  }
  {
    const std::lock_guard lock(shared->mutex);
    shared->rc = rc;
    shared->saved_errno = saved_errno;
    shared->addresses = std::move(addresses);
  }
  // If the query is gone nobody watches the eventfd any more; the write is harmless.
  eventfd_write(shared->done_fd.get(), 1);
}

}  // namespace

DnsQuery::DnsQuery(Token /*token*/, std::shared_ptr<Shared> shared, Handler handler)
    : shared_(std::move(shared)), handler_(std::move(handler)) {}

// The source goes first (member order), then our reference to the shared state; the thread may
// still hold the other one.
DnsQuery::~DnsQuery() = default;

int DnsQuery::on_done(sd_event_source* /*source*/, int fd, uint32_t /*revents*/, void* userdata) {
  auto* self = static_cast<DnsQuery*>(userdata);
  eventfd_t value = 0;
  eventfd_read(fd, &value);
  self->source_.reset();  // one answer only; safe while this source is being dispatched

  Expected<std::vector<SocketAddress>> result = Error{""};
  {
    const std::lock_guard lock(self->shared_->mutex);
    if (self->shared_->rc == 0) {
      result = std::move(self->shared_->addresses);
    } else if (self->shared_->rc == EAI_SYSTEM) {
      result = Error{std::strerror(self->shared_->saved_errno)};
    } else {
      result = Error{gai_strerror(self->shared_->rc)};
    }
  }
  // The handler may destroy this query: move it out and touch nothing after the call.
  Handler handler = std::move(self->handler_);
  handler(std::move(result));
  return 0;
}

}  // namespace dpsd::io
