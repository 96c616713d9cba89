#pragma once
// dpsd's secure channel (see shared/design.md): async DNS (sd-resolve) → non-blocking TCP →
// TLS (OpenSSL; SNI and hostname verification always) and then a relay: a listening Unix socket
// in a private directory that libmosquitto connects to, whose bytes are carried over TLS. Only
// our own process may connect (SO_PEERCRED). Credentials never leave the process before the
// server's certificate has been verified, because libmosquitto is only told the socket path
// once the handshake succeeded.
#include <openssl/ssl.h>
#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace dpsd::io {

struct ChannelOptions {
  std::string host;  // DNS name or literal IP; also the SNI and the name checked in the cert
  std::uint16_t port = 8883;
  std::chrono::milliseconds connect_timeout{10000};    // DNS + TCP
  std::chrono::milliseconds handshake_timeout{10000};  // TLS
  std::filesystem::path socket_dir;  // must exist, mode 0700; the relay socket is created here
};

class SecureChannel {
 public:
  // Called once when TLS is up and the relay socket listens; connect libmosquitto to the path.
  using ReadyHandler = std::function<void(const std::string& unix_socket_path)>;
  // Called once when the channel fails or ends, before or after ready, with a reason such as
  // "dns: example.invalid: not found", "connect: 127.0.0.1:8883: connection refused",
  // "connect: timed out after 10 s", "TLS: certificate verify failed (hostname mismatch)",
  // "TLS: handshake timed out after 10 s", "connection closed by server". Never called after
  // the SecureChannel is destroyed; the handler may destroy the channel.
  using ClosedHandler = std::function<void(const std::string& reason)>;

  SecureChannel(sd_event* event, SSL_CTX* tls, ChannelOptions options, ReadyHandler on_ready,
                ClosedHandler on_closed);
  ~SecureChannel();  // closes sockets, frees TLS, removes the relay socket file
  SecureChannel(const SecureChannel&) = delete;
  SecureChannel& operator=(const SecureChannel&) = delete;

  void start();
  // The peer address actually used ("127.0.0.1:8883"), for logs; empty before connect.
  std::string peer() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dpsd::io
