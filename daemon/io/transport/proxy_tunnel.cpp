#include "io/transport/proxy_tunnel.hpp"

#include <array>

#include "io/transport/tcp_connector.hpp"

namespace dpsd::io::transport {

ProxyTunnel::ProxyTunnel(Stream& below, const core::proxy::ProxyUrl& proxy,
                         const std::string& target_host, std::uint16_t target_port)
    : below_(below),
      proxy_name_(host_port(proxy.host, proxy.port)),
      request_(core::proxy::build_connect_request(proxy, target_host, target_port)),
      parser_(proxy_name_) {}

Progress ProxyTunnel::fail(Close failure) {
  failure.stage = Stage::Proxy;
  failure.where = proxy_name_;
  failure_ = std::move(failure);
  return Progress::Failed;
}

Progress ProxyTunnel::step() {
  while (sent_ < request_.size()) {
    const IoResult out = below_.write(request_.data() + sent_, request_.size() - sent_);
    if (out.status == IoResult::Status::WouldBlock) return Progress::Pending;
    if (out.status == IoResult::Status::Closed) return fail(below_.close_reason());
    sent_ += out.bytes;
  }
  reading_ = true;
  std::array<char, 4096> buffer{};
  for (;;) {
    const IoResult in = below_.read(buffer.data(), buffer.size());
    if (in.status == IoResult::Status::WouldBlock) return Progress::Pending;
    if (in.status == IoResult::Status::Closed) return fail(below_.close_reason());
    switch (parser_.feed(buffer.data(), in.bytes)) {
      case core::proxy::ConnectResponseParser::State::NeedMore:
        continue;
      case core::proxy::ConnectResponseParser::State::Failed:
        return fail(Close(CloseReason::Refused, Stage::Relay, parser_.error()));
      case core::proxy::ConnectResponseParser::State::Done:
        // The TLS client speaks first, so the target cannot have sent anything yet.
        if (!parser_.leftover().empty()) {
          return fail(Close(CloseReason::ProtocolError, Stage::Relay,
                            "sent data after its CONNECT answer"));
        }
        return Progress::Done;
    }
  }
}

std::uint32_t ProxyTunnel::handshake_events() const {
  return below_.wanted_events(reading_, !reading_);
}

}  // namespace dpsd::io::transport
