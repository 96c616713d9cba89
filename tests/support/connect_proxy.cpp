#include "support/connect_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <stdexcept>

namespace dpsd::test {
namespace {

std::string base64(const std::string& in) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  while (i + 2 < in.size()) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += table[(v >> 6) & 63];
    out += table[v & 63];
    i += 3;
  }
  if (i + 1 == in.size()) {
    const unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const unsigned v =
        (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += table[(v >> 18) & 63];
    out += table[(v >> 12) & 63];
    out += table[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

void send_all(int fd, const std::string& data) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<std::size_t>(n);
  }
}

int connect_to(const std::string& host, const std::string& port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &result) != 0) return -1;
  int fd = -1;
  for (addrinfo* a = result; a != nullptr; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(result);
  return fd;
}

}  // namespace

ConnectProxy::ConnectProxy(ConnectProxyOptions options) : options_(std::move(options)) {
  listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (listener_ < 0 ||
      ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listener_, 16) != 0 ||
      ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0 ||
      ::pipe2(stop_pipe_, O_CLOEXEC) != 0) {
    throw std::runtime_error(std::string("ConnectProxy: ") + std::strerror(errno));
  }
  port_ = ntohs(address.sin_port);
  thread_ = std::thread([this] { run(); });
}

ConnectProxy::~ConnectProxy() {
  const char byte = 'x';
  (void)!::write(stop_pipe_[1], &byte, 1);  // every thread polls the pipe; it stays readable
  if (thread_.joinable()) thread_.join();
  for (auto& worker : workers_) worker.join();
  ::close(listener_);
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
}

std::string ConnectProxy::url(const std::string& userinfo) const {
  return "http://" + (userinfo.empty() ? "" : userinfo + "@") +
         "127.0.0.1:" + std::to_string(port_);
}

std::vector<std::string> ConnectProxy::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

void ConnectProxy::run() {
  for (;;) {
    std::array<pollfd, 2> fds{{{listener_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}}};
    if (::poll(fds.data(), fds.size(), -1) < 0) continue;
    if (fds[1].revents != 0) return;
    const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    workers_.emplace_back([this, client] { serve(client); });
  }
}

// One connection, blocking I/O with poll so the stop pipe can end it.
void ConnectProxy::serve(int client) {
  auto wait_readable = [this](int fd) {
    std::array<pollfd, 2> fds{{{fd, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}}};
    return ::poll(fds.data(), fds.size(), 10000) > 0 && fds[1].revents == 0;
  };
  std::string head;
  char buffer[16384];
  while (head.find("\r\n\r\n") == std::string::npos && head.size() < 16384) {
    if (!wait_readable(client)) return void(::close(client));
    const ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
    if (n <= 0) return void(::close(client));
    head.append(buffer, static_cast<std::size_t>(n));
  }
  {
    std::lock_guard lock(mutex_);
    requests_.push_back(head.substr(0, head.find("\r\n\r\n")));
  }
  // "CONNECT host:port HTTP/1.1"
  const std::string line = head.substr(0, head.find("\r\n"));
  const std::size_t sp1 = line.find(' ');
  const std::size_t sp2 = line.find(' ', sp1 + 1);
  const std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::size_t colon = target.rfind(':');
  if (line.rfind("CONNECT ", 0) != 0 || colon == std::string::npos) {
    send_all(client, "HTTP/1.1 400 Bad Request\r\n\r\n");
    return void(::close(client));
  }
  if (options_.user) {
    const std::string expected =
        "Proxy-Authorization: Basic " + base64(*options_.user + ":" + options_.password) + "\r\n";
    if (head.find(expected) == std::string::npos) {
      send_all(client,
               "HTTP/1.1 407 Proxy Authentication Required\r\n"
               "Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n");
      return void(::close(client));
    }
  }
  std::string host = target.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  const std::string port = target.substr(colon + 1);
  if (!options_.allowed_ports.empty() &&
      options_.allowed_ports.count(static_cast<std::uint16_t>(std::stoi(port))) == 0) {
    send_all(client, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    return void(::close(client));
  }
  const int upstream = connect_to(host, port);
  if (upstream < 0) {
    send_all(client, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    return void(::close(client));
  }
  send_all(client, "HTTP/1.1 200 Connection established\r\n\r\n");
  ++tunnels_;
  for (;;) {
    std::array<pollfd, 3> fds{
        {{client, POLLIN, 0}, {upstream, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}}};
    if (::poll(fds.data(), fds.size(), -1) < 0) continue;
    if (fds[2].revents != 0) break;
    bool done = false;
    for (int i = 0; i < 2 && !done; ++i) {
      if (fds[i].revents == 0) continue;
      const ssize_t n = ::recv(fds[i].fd, buffer, sizeof buffer, 0);
      if (n <= 0) {
        done = true;
        break;
      }
      send_all(fds[1 - i].fd, std::string(buffer, static_cast<std::size_t>(n)));
    }
    if (done) break;
  }
  ::close(upstream);
  ::close(client);
}

}  // namespace dpsd::test
