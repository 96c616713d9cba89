#pragma once
// For the X.509/PKCS#11 tests: `openssl s_server -Verify 1` (client certificate required and
// verified against the test CA) and one blocking TLS round trip through a client SSL_CTX. The
// round trip, not just the handshake, is the proof: in TLS 1.3 the server checks the client's
// certificate after the client already considers the handshake done.
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "support/net.hpp"
#include "support/process.hpp"
#include "support/test_pki.hpp"

namespace dpsd::test {

struct ClientAuthServer {
  std::uint16_t port = 0;
  std::unique_ptr<Process> process;
};

// -rev echoes every line reversed (the default mode quits at EOF on stdin, /dev/null here).
inline ClientAuthServer start_client_auth_server(const TestPki& pki) {
  using namespace std::chrono_literals;
  ClientAuthServer server;
  server.port = free_port();
  server.process = std::make_unique<Process>(std::vector<std::string>{
      "openssl", "s_server", "-rev", "-Verify", "1", "-verify_return_error", "-CAfile",
      pki.ca_path().string(), "-accept", "127.0.0.1:" + std::to_string(server.port), "-cert",
      pki.server_cert().string(), "-key", pki.server_key().string()});
  wait_for_tcp_port(server.port, 10s);
  return server;
}

// "" when "hello" came back reversed; otherwise what went wrong.
inline std::string tls_round_trip(SSL_CTX* ctx, std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "socket failed";
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    return "connect failed";
  }
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx), SSL_free);
  SSL_set_fd(ssl.get(), fd);
  SSL_set_tlsext_host_name(ssl.get(), "localhost");
  SSL_set1_host(ssl.get(), "localhost");
  ERR_clear_error();
  if (SSL_connect(ssl.get()) != 1) {
    return std::string("handshake failed: ") + ERR_reason_error_string(ERR_get_error());
  }
  if (SSL_write(ssl.get(), "hello\n", 6) != 6) return "write failed";
  std::string reply;
  char buffer[64];
  while (reply.find('\n') == std::string::npos) {
    const int n = SSL_read(ssl.get(), buffer, sizeof buffer);
    if (n <= 0) {
      const unsigned long code = ERR_get_error();
      return "read failed after the handshake (server refused the client certificate?): " +
             std::string(code != 0 ? ERR_reason_error_string(code) : "connection closed");
    }
    reply.append(buffer, static_cast<std::size_t>(n));
  }
  return reply.rfind("olleh", 0) == 0 ? "" : "unexpected reply " + reply;
}

}  // namespace dpsd::test
