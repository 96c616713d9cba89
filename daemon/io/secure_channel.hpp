#pragma once
// dpsd's secure channel: DNS → non-blocking TCP → TLS (OpenSSL; SNI and hostname verification
// always) and then a relay: a listening Unix socket in a private directory that libmosquitto
// connects to, whose bytes are carried over TLS. Only our own process may connect
// (SO_PEERCRED). Credentials never leave the process before the server's certificate has been
// verified, because libmosquitto is only told the socket path once the handshake succeeded.
// Each step is a stage in io/transport/ (tcp_connector, proxy_tunnel, tls_stream, ws_stream,
// relay) behind one stream interface (transport/stream.hpp); this class runs them in order.
//
// Optionally the TCP connection goes through an HTTP CONNECT proxy (the tunnel is set up
// before TLS, so the proxy sees only the target's name and port), and optionally MQTT rides in
// WebSocket frames over the TLS connection (port 443 for networks that only let HTTPS out).
// "auto" tries plain MQTT on 8883 first, with a short TCP budget, and falls back to WebSocket
// on 443; transport_used() tells the caller which one worked so it can start there next time.
#include <openssl/ssl.h>
#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/http_proxy.hpp"
#include "core/transport.hpp"

namespace dpsd::io {

struct ChannelOptions {
  std::string host;  // DNS name or literal IP; also the SNI and the name checked in the cert
  std::uint16_t port = 8883;  // Mqtt and Auto's first try; MqttWs uses it too (set it to 443)
  core::Transport transport = core::Transport::Mqtt;
  std::uint16_t ws_port = 443;  // Auto's fallback
  // Auto: how long the first try (DNS, TCP and the proxy's CONNECT) may take before falling
  // back. Short, because a firewall that drops 8883 silently would otherwise cost a whole
  // connect_timeout on every attempt.
  std::chrono::milliseconds auto_fallback_after{5000};
  std::string ws_path = "/$iothub/websocket";
  // Set: TCP goes to the proxy, which is asked to CONNECT host:port. Credentials, if any, are
  // sent as Proxy-Authorization: Basic and never appear in a reason or in peer().
  std::optional<core::proxy::ProxyUrl> proxy;
  std::chrono::milliseconds connect_timeout{10000};    // DNS + TCP (+ the proxy's CONNECT)
  std::chrono::milliseconds handshake_timeout{10000};  // TLS (+ the WebSocket upgrade)
  std::filesystem::path socket_dir;  // must exist, mode 0700; the relay socket is created here
};

class SecureChannel {
 public:
  // Called once when TLS is up and the relay socket listens; connect libmosquitto to the path.
  using ReadyHandler = std::function<void(const std::string& unix_socket_path)>;
  // Called once when the channel fails or ends, before or after ready, with a reason such as
  // "dns: example.invalid: not found", "connect: 127.0.0.1:8883: connection refused",
  // "connect: timed out after 10 s", "TLS: certificate verify failed (hostname mismatch)",
  // "TLS: handshake timed out after 10 s", "connection closed by server",
  // "proxy: 127.0.0.1:3128: CONNECT refused: 407 Proxy Authentication Required",
  // "WebSocket: upgrade refused: 404 Not Found", "WebSocket: bad Sec-WebSocket-Accept". With
  // Auto, a failed fallback also names why the first try failed. Never called after
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
  // Mqtt or MqttWs: what this channel is using (for Auto, what worked or is being tried).
  core::Transport transport_used() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dpsd::io
