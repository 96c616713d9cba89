// The orchestrator of the channel's stages (daemon/io/transport/): it owns the phases, the two
// budgets (connect: DNS, TCP and a proxy's CONNECT; handshake: TLS and the WebSocket upgrade),
// Auto's fallback from 8883 to WebSocket on 443, and the ready and closed reports. The stages
// do the work and say why they ended as a transport::Close; transport::describe() words it.
#include "io/secure_channel.hpp"

#include <sys/epoll.h>

#include <algorithm>
#include <utility>

#include "io/event_loop.hpp"
#include "io/transport/proxy_tunnel.hpp"
#include "io/transport/relay.hpp"
#include "io/transport/stream.hpp"
#include "io/transport/tcp_connector.hpp"
#include "io/transport/tls_stream.hpp"
#include "io/transport/ws_stream.hpp"

namespace dpsd::io {

using transport::Close;
using transport::CloseReason;
using transport::Stage;

namespace {

// An address that neither answers nor refuses (a dropped SYN) may cost this much before the
// next address is tried, when there is one; RFC 8305 allows up to 2 s between attempts.
constexpr std::chrono::milliseconds kAttemptTimeout{2000};

}  // namespace

struct SecureChannel::Impl {
  enum class Phase {
    Idle,
    Connecting,
    ProxyConnecting,
    Handshaking,
    WsUpgrading,
    Relaying,
    Closed
  };

  Impl(sd_event* event, SSL_CTX* tls, ChannelOptions options, ReadyHandler on_ready,
       ClosedHandler on_closed)
      : event(event),
        tls(tls),
        options(std::move(options)),
        on_ready(std::move(on_ready)),
        on_closed(std::move(on_closed)),
        watch(event, [this] { step(); }),
        connect_timer(event, [this] { on_connect_timeout(); }),
        handshake_timer(event, [this] { on_handshake_timeout(); }),
        // The handlers may destroy the channel: take what they need first, touch nothing after.
        ready(event,
              [this] {
                ReadyHandler handler = std::move(this->on_ready);
                if (handler) handler(std::string(socket_path));
              }),
        closed(event, [this] {
          ClosedHandler handler = std::move(this->on_closed);
          if (handler) handler(std::string(close_reason));
        }) {}

  void begin_connect();
  void on_connected(std::unique_ptr<transport::TcpStream> tcp, Close failure);
  void begin_tls();
  void begin_ws();
  void step();
  void advance();
  void open_relay();
  bool may_fall_back() const {
    return options.transport == core::Transport::Auto && current == core::Transport::Mqtt;
  }
  void fail_connect(Close failure);
  void close(Close why);
  void on_connect_timeout();
  void on_handshake_timeout();

  sd_event* event;
  SSL_CTX* tls;
  ChannelOptions options;
  ReadyHandler on_ready;
  ClosedHandler on_closed;

  Phase phase = Phase::Idle;
  core::Transport current = core::Transport::Mqtt;  // never Auto: what is being tried or used
  std::uint16_t current_port = 0;
  std::chrono::milliseconds connect_budget{0};
  std::chrono::steady_clock::time_point connect_deadline;  // for the proxy's CONNECT
  std::string first_try;  // Auto: "8883: why it failed", added to a failure of the fallback
  std::string peer;
  std::string socket_path;
  std::string close_reason;

  // The stages. `stream` is the stack built so far (TCP, TLS over it, WebSocket over that);
  // `handshake` the stage being set up on it. The tunnel borrows `stream`, so it is declared
  // after it (destroyed first); the relay takes the stack over once it is complete.
  std::unique_ptr<transport::TcpConnector> connector;
  std::unique_ptr<transport::Stream> stream;
  std::unique_ptr<transport::ProxyTunnel> tunnel;
  transport::Handshake* handshake = nullptr;
  std::unique_ptr<transport::Relay> relay;
  // Last: destroyed first, so no callback runs on a half-destroyed channel.
  transport::IoWatch watch;  // the socket, while a handshake is stepped
  Timer connect_timer;       // the proxy's CONNECT (the connector keeps its own budget)
  Timer handshake_timer;
  Deferred ready;
  Deferred closed;
};

// Resolves and connects to the proxy when there is one, else to the target itself. Called
// again, from the start, when Auto falls back to WebSocket.
void SecureChannel::Impl::begin_connect() {
  phase = Phase::Connecting;
  connect_budget = may_fall_back() ? std::min(options.auto_fallback_after, options.connect_timeout)
                                   : options.connect_timeout;
  connect_deadline = std::chrono::steady_clock::now() + connect_budget;
  if (options.host.empty()) {
    return close(Close(CloseReason::NameNotResolved, Stage::Dns, "no host name configured"));
  }
  connector = std::make_unique<transport::TcpConnector>(
      event,
      transport::TcpConnector::Options{
          .host = options.proxy ? options.proxy->host : options.host,
          .port = options.proxy ? options.proxy->port : current_port,
          .timeout = connect_budget,
          .attempt_timeout = std::min(kAttemptTimeout, connect_budget)},
      [this](std::unique_ptr<transport::TcpStream> tcp, Close failure) {
        on_connected(std::move(tcp), std::move(failure));
      });
  connector->start();
}

void SecureChannel::Impl::on_connected(std::unique_ptr<transport::TcpStream> tcp, Close failure) {
  peer = connector->peer();
  connector.reset();  // we are inside its handler; it allows that
  if (!tcp) {
    // Not a reason for Auto to fall back: the same name would fail the same way on 443.
    if (failure.stage == Stage::Dns || failure.reason == CloseReason::SetupFailed) {
      return close(std::move(failure));
    }
    return fail_connect(std::move(failure));
  }
  stream = std::move(tcp);
  if (auto status = watch.watch(stream->fd(), EPOLLOUT); !status) {
    return close(Close(CloseReason::SetupFailed, Stage::Connect, status.error(), peer));
  }
  if (!options.proxy) return begin_tls();
  // The connect budget also covers the proxy's CONNECT: a proxy that cannot reach the target
  // often answers only after its own, longer timeout.
  phase = Phase::ProxyConnecting;
  tunnel =
      std::make_unique<transport::ProxyTunnel>(*stream, *options.proxy, options.host, current_port);
  handshake = tunnel.get();
  const auto left = connect_deadline - std::chrono::steady_clock::now();
  connect_timer.arm(std::chrono::duration_cast<std::chrono::microseconds>(
      std::max(left, std::chrono::steady_clock::duration::zero())));
  step();
}

void SecureChannel::Impl::begin_tls() {
  phase = Phase::Handshaking;
  auto tls_stream = std::make_unique<transport::TlsStream>(tls, std::move(stream), options.host);
  handshake = tls_stream.get();
  stream = std::move(tls_stream);
  handshake_timer.arm(options.handshake_timeout);
  step();
}

// After TLS, so the upgrade request (and the server's answer) are private and authenticated.
// Under the same handshake budget.
void SecureChannel::Impl::begin_ws() {
  phase = Phase::WsUpgrading;
  const bool ipv6 = options.host.find(':') != std::string::npos;
  std::string host_header = ipv6 ? "[" + options.host + "]" : options.host;
  if (current_port != 443) host_header += ":" + std::to_string(current_port);
  auto ws_stream = std::make_unique<transport::WsStream>(
      std::move(stream),
      transport::WsStream::Options{.host = host_header, .path = options.ws_path});
  handshake = ws_stream.get();
  stream = std::move(ws_stream);
  step();
}

// The socket is ready (or the stage was just created): advance the stage being set up.
void SecureChannel::Impl::step() {
  switch (handshake->step()) {
    case transport::Progress::Pending:
      return watch.set_events(handshake->handshake_events());
    case transport::Progress::Done:
      return advance();
    case transport::Progress::Failed:
      break;
  }
  const Close failure = handshake->failure();
  // Auto tries 443 when the proxy would not tunnel to 8883, but not for wrong or missing
  // credentials (they fail the same way on every port) or a proxy that breaks the protocol.
  if (phase == Phase::ProxyConnecting && tunnel->status() != 407 &&
      failure.reason != CloseReason::ProtocolError) {
    return fail_connect(failure);
  }
  close(failure);
}

void SecureChannel::Impl::advance() {
  switch (phase) {
    case Phase::ProxyConnecting:
      connect_timer.cancel();
      handshake = nullptr;
      tunnel.reset();
      return begin_tls();
    case Phase::Handshaking:
      if (current == core::Transport::MqttWs) return begin_ws();
      handshake_timer.cancel();
      return open_relay();
    case Phase::WsUpgrading:
      handshake_timer.cancel();
      return open_relay();
    default:
      return;
  }
}

// The relay socket is created only now, after the server proved its identity: libmosquitto
// learns the path from on_ready, so no credential can be written before verification.
void SecureChannel::Impl::open_relay() {
  watch.stop();  // quiet until the client is there; the kernel buffers the server's bytes
  handshake = nullptr;
  relay = std::make_unique<transport::Relay>(event, std::move(stream),
                                             [this](const Close& why) { close(why); });
  if (auto refused = relay->take_buffered_input()) return close(*refused);
  auto path = relay->listen(options.socket_dir);
  if (!path) {
    return close(Close(CloseReason::SetupFailed, Stage::RelaySocket, path.error()));
  }
  socket_path = std::move(*path);
  phase = Phase::Relaying;
  ready.post();
}

// Auto: 8883 could not be reached (refused, silently dropped, or the proxy would not CONNECT
// to it). Port 443 is what restrictive networks leave open, so try WebSocket there. Only
// failures before TLS count: a TLS or MQTT failure on 8883 would repeat on 443.
void SecureChannel::Impl::fail_connect(Close failure) {
  if (!may_fall_back()) return close(std::move(failure));
  first_try = std::to_string(current_port) + ": " + transport::describe(failure);
  connect_timer.cancel();
  watch.stop();
  handshake = nullptr;
  tunnel.reset();
  stream.reset();
  current = core::Transport::MqttWs;
  current_port = options.ws_port;
  begin_connect();
}

void SecureChannel::Impl::on_connect_timeout() {
  if (phase != Phase::ProxyConnecting) return;
  fail_connect(Close::timeout(Stage::Proxy, connect_budget, tunnel->proxy_name(),
                              transport::host_port(options.host, current_port)));
}

void SecureChannel::Impl::on_handshake_timeout() {
  if (phase != Phase::Handshaking && phase != Phase::WsUpgrading) return;
  close(Close::timeout(phase == Phase::Handshaking ? Stage::Tls : Stage::WebSocket,
                       options.handshake_timeout));
}

// Tears everything down now and reports later, through a Deferred: close() runs deep inside
// the stages' callbacks, and the handler may destroy the channel, so it must run where nothing
// of ours is left on the stack. Destroying the channel first cancels the report.
void SecureChannel::Impl::close(Close why) {
  if (phase == Phase::Closed) return;
  if (phase != Phase::Relaying) why.first_try = first_try;  // Auto: half the story otherwise
  close_reason = transport::describe(why);
  phase = Phase::Closed;
  connect_timer.cancel();
  handshake_timer.cancel();
  ready.cancel();
  watch.stop();
  handshake = nullptr;
  connector.reset();
  tunnel.reset();
  stream.reset();
  relay.reset();  // closes both sides and removes the relay socket file
  closed.post();
}

SecureChannel::SecureChannel(sd_event* event, SSL_CTX* tls, ChannelOptions options,
                             ReadyHandler on_ready, ClosedHandler on_closed)
    : impl_(std::make_unique<Impl>(event, tls, std::move(options), std::move(on_ready),
                                   std::move(on_closed))) {}

SecureChannel::~SecureChannel() = default;

void SecureChannel::start() {
  if (impl_->phase != Impl::Phase::Idle) return;
  impl_->current = impl_->options.transport == core::Transport::MqttWs ? core::Transport::MqttWs
                                                                       : core::Transport::Mqtt;
  impl_->current_port = impl_->options.port;
  impl_->begin_connect();
}

std::string SecureChannel::peer() const {
  return impl_->connector ? impl_->connector->peer() : impl_->peer;
}

core::Transport SecureChannel::transport_used() const {
  return impl_->current;
}

}  // namespace dpsd::io
