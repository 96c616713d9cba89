#pragma once
// The optional second stage: asks an HTTP proxy, over the TCP stream to it, to CONNECT to the
// target (RFC 9110 9.3.6). The tunnel is made before TLS, so the proxy sees only the target's
// name and port; after the answer the same stream carries TLS to the target. The request and
// the answer's parser are core::proxy's; this stage does the I/O.
#include <cstdint>
#include <optional>
#include <string>

#include "core/http_proxy.hpp"
#include "io/transport/stream.hpp"

namespace dpsd::io::transport {

class ProxyTunnel final : public Handshake {
 public:
  // `below` is the connected stream to the proxy; it must outlive the tunnel.
  ProxyTunnel(Stream& below, const core::proxy::ProxyUrl& proxy, const std::string& target_host,
              std::uint16_t target_port);

  Progress step() override;
  std::uint32_t handshake_events() const override;
  const Close& failure() const override { return failure_; }
  // The proxy's status code once it answered (407: wrong or missing credentials).
  int status() const { return parser_.status(); }
  // The proxy as messages name it ("127.0.0.1:3128", never with credentials).
  const std::string& proxy_name() const { return proxy_name_; }

 private:
  Progress fail(Close failure);

  Stream& below_;
  std::string proxy_name_;
  std::string request_;  // what is still to be sent
  std::size_t sent_ = 0;
  core::proxy::ConnectResponseParser parser_;
  bool reading_ = false;  // the request is out; waiting for the answer
  Close failure_;
};

}  // namespace dpsd::io::transport
