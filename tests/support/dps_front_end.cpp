#include "support/dps_front_end.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

#include "support/dps_emulator.hpp"

namespace dpsd::test {
namespace {

using Clock = std::chrono::steady_clock;

std::string ssl_error_text() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "no OpenSSL error queued";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// Socket reads and writes never block a relay thread for longer than this, so the destructor's
// join is bounded even when a peer stalls mid-handshake or mid-record.
void set_timeouts(int fd) {
  timeval tv{};
  tv.tv_sec = 3;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

struct SslDeleter {
  void operator()(SSL* s) const { SSL_free(s); }
};
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

// Whole MQTT packets from the front of `buffer` (fixed header byte, remaining length as a
// variable byte integer of at most 4 bytes, then that many bytes), removed from it.
std::vector<std::string> take_packets(std::string& buffer, bool& malformed) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  for (;;) {
    if (buffer.size() - pos < 2) break;
    std::size_t remaining = 0;
    std::size_t multiplier = 1;
    std::size_t i = pos + 1;
    bool complete_length = false;
    for (int k = 0; k < 4 && i < buffer.size(); ++k, ++i) {
      const auto byte = static_cast<unsigned char>(buffer[i]);
      remaining += (byte & 0x7fU) * multiplier;
      multiplier *= 128;
      if ((byte & 0x80U) == 0) {
        complete_length = true;
        ++i;
        break;
      }
      if (k == 3) malformed = true;
    }
    if (malformed || !complete_length) break;
    if (buffer.size() - i < remaining) break;
    out.push_back(buffer.substr(pos, i - pos + remaining));
    pos = i + remaining;
  }
  buffer.erase(0, pos);
  return out;
}

bool write_all(SSL* ssl, const std::string& data) {
  std::size_t done = 0;
  while (done < data.size()) {
    const int n = SSL_write(ssl, data.data() + done, static_cast<int>(data.size() - done));
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

constexpr int kPublish = 3;
constexpr int kSuback = 9;

}  // namespace

struct DpsFrontEnd::Impl {
  SSL_CTX* server = nullptr;
  SSL_CTX* client = nullptr;
  ~Impl() {
    SSL_CTX_free(server);
    SSL_CTX_free(client);
  }
};

DpsFrontEnd::DpsFrontEnd(const DpsEmulator& emulator, FrontEndOptions options)
    : impl_(std::make_unique<Impl>()), options_(options), upstream_port_(emulator.port()) {
  impl_->server = SSL_CTX_new(TLS_server_method());
  impl_->client = SSL_CTX_new(TLS_client_method());
  if (impl_->server == nullptr || impl_->client == nullptr) {
    throw std::runtime_error("DpsFrontEnd: SSL_CTX_new: " + ssl_error_text());
  }
  SSL_CTX_set_min_proto_version(impl_->server, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(impl_->server, emulator.pki().server_cert().c_str()) !=
          1 ||
      SSL_CTX_use_PrivateKey_file(impl_->server, emulator.pki().server_key().c_str(),
                                  SSL_FILETYPE_PEM) != 1) {
    throw std::runtime_error("DpsFrontEnd: server certificate: " + ssl_error_text());
  }
  SSL_CTX_set_min_proto_version(impl_->client, TLS1_2_VERSION);
  if (SSL_CTX_load_verify_locations(impl_->client, emulator.ca_path().c_str(), nullptr) != 1) {
    throw std::runtime_error("DpsFrontEnd: CA: " + ssl_error_text());
  }
  SSL_CTX_set_verify(impl_->client, SSL_VERIFY_PEER, nullptr);

  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error("DpsFrontEnd: socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;  // the kernel picks a free port: no race with another fixture
  socklen_t len = sizeof addr;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 16) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(listen_fd_);
    throw std::runtime_error("DpsFrontEnd: cannot listen on 127.0.0.1");
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

DpsFrontEnd::~DpsFrontEnd() {
  stop_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  ::close(listen_fd_);
  std::lock_guard lock(threads_mutex_);
  for (auto& t : threads_) t.join();
}

void DpsFrontEnd::accept_loop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ++connections_;
    std::lock_guard lock(threads_mutex_);
    threads_.emplace_back([this, fd] { relay(fd); });
  }
}

void DpsFrontEnd::relay(int client_fd) {
  // A write to a peer that has gone raises SIGPIPE in the writing thread; blocked here, the
  // write fails with EPIPE instead and the test process lives on.
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, nullptr);

  set_timeouts(client_fd);
  const int server_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  SslPtr down(SSL_new(impl_->server));
  SslPtr up(SSL_new(impl_->client));
  auto finish = [&] {
    if (down) SSL_shutdown(down.get());
    if (up) SSL_shutdown(up.get());
    down.reset();
    up.reset();
    ::close(client_fd);
    if (server_fd >= 0) ::close(server_fd);
  };
  if (server_fd < 0 || !down || !up) return finish();
  set_timeouts(server_fd);
  SSL_set_fd(down.get(), client_fd);
  if (SSL_accept(down.get()) != 1) return finish();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(upstream_port_);
  if (::connect(server_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return finish();
  }
  SSL_set_fd(up.get(), server_fd);
  SSL_set_tlsext_host_name(up.get(), "localhost");
  SSL_set1_host(up.get(), "localhost");
  if (SSL_connect(up.get()) != 1) return finish();

  std::string from_client;
  std::string from_server;
  std::string held;  // the SUBACK and everything the server sent after it, until released
  bool holding = false;
  Clock::time_point release_at{};
  bool suback_forwarded = false;
  char buf[16384];
  while (!stop_) {
    if (holding && Clock::now() >= release_at) {
      if (!write_all(down.get(), held)) break;
      held.clear();
      holding = false;
      suback_forwarded = true;
      ++subacks_;
    }
    pollfd fds[2] = {{client_fd, POLLIN, 0}, {server_fd, POLLIN, 0}};
    const bool pending = SSL_pending(down.get()) > 0 || SSL_pending(up.get()) > 0;
    if (!pending && ::poll(fds, 2, 20) <= 0) continue;
    bool failed = false;
    if (SSL_pending(down.get()) > 0 || (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const int n = SSL_read(down.get(), buf, sizeof buf);
      if (n <= 0) break;
      from_client.append(buf, static_cast<std::size_t>(n));
      bool malformed = false;
      for (auto& packet : take_packets(from_client, malformed)) {
        if ((static_cast<unsigned char>(packet[0]) >> 4) == kPublish) {
          if (!suback_forwarded) {
            ++dropped_;  // never reaches the service, and no PUBACK comes back
            continue;
          }
          ++forwarded_;
        }
        if (!write_all(up.get(), packet)) failed = true;
      }
      if (malformed) failed = true;
    }
    if (SSL_pending(up.get()) > 0 || (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      const int n = SSL_read(up.get(), buf, sizeof buf);
      if (n <= 0) break;
      from_server.append(buf, static_cast<std::size_t>(n));
      bool malformed = false;
      for (auto& packet : take_packets(from_server, malformed)) {
        const bool suback = (static_cast<unsigned char>(packet[0]) >> 4) == kSuback;
        if (!suback_forwarded && !holding && suback) {
          holding = true;
          release_at = Clock::now() + options_.suback_delay;
        }
        if (holding) {
          held += packet;  // order is kept: nothing overtakes the held SUBACK
        } else if (!write_all(down.get(), packet)) {
          failed = true;
        }
      }
      if (malformed) failed = true;
    }
    if (failed) break;
  }
  finish();
}

}  // namespace dpsd::test
