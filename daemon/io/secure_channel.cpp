#include "io/secure_channel.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "core/errno_text.hpp"
#include "core/mqtt_inbound_gate.hpp"
#include "core/websocket.hpp"
#include "io/dns_resolver.hpp"
#include "io/event_loop.hpp"
#include "io/openssl_error.hpp"
#include "io/private_dir.hpp"
#include "io/unique_fd.hpp"

namespace dpsd::io {
namespace {

using core::errno_text;

constexpr std::string_view kClosedByServer = "connection closed by server";
constexpr std::string_view kClosedByClient = "connection closed by client";

// strerror() with a lower-case first letter, so it reads as the tail of our own sentence
// ("connect: 127.0.0.1:8883: connection refused").
bool would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

// --- A socket BIO that cannot raise SIGPIPE --------------------------------------------------
// OpenSSL's own socket BIO writes with write(), which raises SIGPIPE when the server has gone.
// The daemon ignores SIGPIPE, but a library should not depend on that (tests do not), so the
// TLS socket is driven through send(MSG_NOSIGNAL)/recv() instead.

struct SocketBioState {
  int fd = -1;
  bool eof = false;  // recv() returned 0; OpenSSL asks (BIO_CTRL_EOF) to tell EOF from errors
};

int socket_bio_write(BIO* bio, const char* data, int length) {
  auto* state = static_cast<SocketBioState*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  const ssize_t n = ::send(state->fd, data, static_cast<size_t>(length), MSG_NOSIGNAL);
  if (n >= 0) return static_cast<int>(n);
  if (would_block(errno)) BIO_set_retry_write(bio);
  return -1;
}

int socket_bio_read(BIO* bio, char* data, int length) {
  auto* state = static_cast<SocketBioState*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  const ssize_t n = ::recv(state->fd, data, static_cast<size_t>(length), 0);
  if (n > 0) return static_cast<int>(n);
  if (n == 0) {
    state->eof = true;
    return 0;
  }
  if (would_block(errno)) BIO_set_retry_read(bio);
  return -1;
}

long socket_bio_ctrl(BIO* bio, int cmd, long /*num*/, void* /*ptr*/) {
  auto* state = static_cast<SocketBioState*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // send() does not buffer
    case BIO_CTRL_EOF:
      return state->eof ? 1 : 0;
    default:
      return 0;
  }
}

const BIO_METHOD* socket_bio_method() {
  struct MethodDeleter {
    void operator()(BIO_METHOD* method) const { BIO_meth_free(method); }
  };
  static const std::unique_ptr<BIO_METHOD, MethodDeleter> method = [] {
    std::unique_ptr<BIO_METHOD, MethodDeleter> m(
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "dpsd nosigpipe socket"));
    if (m) {
      BIO_meth_set_write(m.get(), socket_bio_write);
      BIO_meth_set_read(m.get(), socket_bio_read);
      BIO_meth_set_ctrl(m.get(), socket_bio_ctrl);
    }
    return m;
  }();
  return method.get();
}

struct SslDeleter {
  void operator()(SSL* ssl) const { SSL_free(ssl); }
};
using SslPtr = std::unique_ptr<SSL, SslDeleter>;

// One direction of the relay. Bounded, so a peer that stops reading applies back-pressure
// (we stop reading the other side) instead of growing memory.
class RelayBuffer {
 public:
  static constexpr std::size_t kCapacity = std::size_t{16} * 1024;

  bool empty() const { return begin_ == end_; }
  bool full() const { return begin_ == 0 && end_ == kCapacity; }
  const char* data() const { return bytes_.data() + begin_; }
  std::size_t size() const { return end_ - begin_; }
  // Free space at the tail; moves pending bytes to the front first. SSL_write tolerates that
  // because SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER is set and a retry only ever gets longer.
  char* space() {
    if (begin_ > 0) {
      std::memmove(bytes_.data(), bytes_.data() + begin_, size());
      end_ -= begin_;
      begin_ = 0;
    }
    return bytes_.data() + end_;
  }
  // Room for more, counting what space() reclaims at the front: a few bytes the gate holds
  // back must not leave a buffer that looks full and is never read again.
  std::size_t space_size() const { return kCapacity - size(); }
  void produced(std::size_t n) { end_ += n; }
  void consumed(std::size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }

 private:
  std::array<char, kCapacity> bytes_{};
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

// What the last SSL_read or SSL_write is blocked on. Either can need the other direction of
// the socket (TLS 1.3 key updates, session tickets), so each direction remembers its own.
enum class Want { Read, Write };

std::uint32_t epoll_for(Want want) {
  return want == Want::Read ? EPOLLIN : EPOLLOUT;
}

unsigned relay_socket_counter = 0;  // one loop, one thread: no atomics needed

// WebSocket keys and masks need not be secret, only unpredictable to the network (RFC 6455
// 10.3: masking stops proxies from being poisoned with attacker-chosen bytes).
template <std::size_t N>
std::array<std::uint8_t, N> random_bytes() {
  std::array<std::uint8_t, N> out{};
  if (RAND_bytes(out.data(), static_cast<int>(N)) != 1) {
    // Only when the DRBG cannot seed; a fixed mask still yields valid frames.
    out.fill(0x5a);
  }
  return out;
}

// Bounds on what the WebSocket relay holds: bytes waiting for TLS, and unwrapped bytes waiting
// for libmosquitto. Beyond them, the other side is not read (back-pressure, as RelayBuffer).
constexpr std::size_t kWsWireHighWater = std::size_t{64} * 1024;
constexpr std::size_t kWsDownHighWater = std::size_t{16} * 1024;

}  // namespace

struct SecureChannel::Impl {
  enum class Phase {
    Idle,
    Resolving,
    Connecting,
    ProxyConnecting,  // TCP to the proxy is up; CONNECT sent, waiting for its answer
    Handshaking,
    WsUpgrading,  // TLS is up; HTTP upgrade sent, waiting for 101
    Listening,
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
        connect_timer(event, [this] { on_connect_timeout(); }),
        handshake_timer(event, [this] { on_handshake_timeout(); }) {}

  ~Impl() { remove_socket_file(); }

  void start();
  void begin_connect();
  bool may_fall_back() const;
  void fall_back(const std::string& reason);
  void fail_connect(std::string reason);
  void proxy_step();
  void begin_ws_upgrade();
  void ws_upgrade_step();
  void pump_ws();
  bool handle_ws_input(const char* data, std::size_t n);
  void update_interest_ws();
  std::string target() const;
  std::string proxy_name() const;
  // Each returns after at most one close(); callers must not touch the TLS state afterwards.
  void on_resolved(Expected<std::vector<SocketAddress>> result);
  void connect_next();
  void on_tcp_writable();
  void on_tcp_connected();
  void begin_tls();
  void handshake_step();
  void open_listener();
  void accept_clients();
  void pump();
  bool gate_passes(std::string_view from_server);
  std::size_t down_ready() const { return down.size() - gate.held_back(); }
  std::size_t ws_down_ready() const { return ws_down.size() - gate.held_back(); }
  void update_interest();
  void on_connect_timeout();
  void on_handshake_timeout();
  std::string tls_io_error(int ssl_error, int saved_errno);
  void close(std::string reason);
  void schedule(EventSourcePtr& slot, sd_event_handler_t handler);
  void remove_socket_file();
  void set_events(sd_event_source* source, std::uint32_t events);

  static int on_tcp_io(sd_event_source* source, int fd, uint32_t revents, void* userdata);
  static int on_listen_io(sd_event_source* source, int fd, uint32_t revents, void* userdata);
  static int on_client_io(sd_event_source* source, int fd, uint32_t revents, void* userdata);
  static int on_ready_defer(sd_event_source* source, void* userdata);
  static int on_closed_defer(sd_event_source* source, void* userdata);

  sd_event* event;
  SSL_CTX* tls;
  ChannelOptions options;
  ReadyHandler on_ready;
  ClosedHandler on_closed;

  Phase phase = Phase::Idle;
  core::Transport current = core::Transport::Mqtt;  // never Auto: what is being tried or used
  std::uint16_t current_port = 0;
  std::string first_try_error;  // Auto: why 8883 did not work, added to a later failure
  bool ip_literal = false;
  std::vector<SocketAddress> addresses;
  std::size_t next_address = 0;
  std::string last_connect_error;
  std::string peer;
  std::string socket_path;
  std::string socket_name;  // socket_path's last component, created in socket_dir_fd
  bool socket_file_exists = false;
  std::string close_reason;

  RelayBuffer up;    // client (libmosquitto) -> server
  RelayBuffer down;  // server -> client
  // Every byte from the server passes it before libmosquitto may see it; the last
  // gate.held_back() bytes of `down` / `ws_down` (an unfinished header) wait for the rest.
  core::MqttInboundGate gate;
  bool client_eof = false;
  bool server_eof = false;

  // Proxy CONNECT and WebSocket upgrade: the request still to send, and the answer's parser.
  std::string handshake_out;
  std::optional<core::proxy::ConnectResponseParser> proxy_parser;
  std::optional<core::ws::UpgradeResponseParser> ws_parser;
  // WebSocket relay: framed bytes for TLS (data, pongs, our close), and unwrapped server data.
  core::ws::FrameDecoder ws_decoder;
  std::string wire_out;
  std::string ws_down;
  bool ws_close_received = false;
  std::string ws_close_reason;
  Want read_want = Want::Read;
  Want write_want = Want::Write;

  // Declaration order is destruction order reversed: event sources and timers go first (so no
  // callback can run on a half-destroyed object and no source watches a closed fd), then the
  // SSL object, then the BIO state it points to and the fds.
  UniqueFd tcp;
  UniqueFd socket_dir_fd;  // the checked private directory, while the socket file exists
  UniqueFd listener;
  UniqueFd client;
  SocketBioState bio_state;
  SslPtr ssl;
  std::unique_ptr<DnsQuery> dns;
  EventSourcePtr tcp_source;
  EventSourcePtr listen_source;
  EventSourcePtr client_source;
  EventSourcePtr ready_source;
  EventSourcePtr closed_source;
  Timer connect_timer;
  Timer handshake_timer;
};

void SecureChannel::Impl::start() {
  if (phase != Phase::Idle) return;
  current = options.transport == core::Transport::MqttWs ? core::Transport::MqttWs
                                                         : core::Transport::Mqtt;
  current_port = options.port;
  begin_connect();
}

// Resolves and connects to the proxy when there is one, else to the target itself. Called
// again, from the start, when Auto falls back to WebSocket.
void SecureChannel::Impl::begin_connect() {
  phase = Phase::Resolving;
  addresses.clear();
  next_address = 0;
  last_connect_error.clear();
  connect_timer.arm(may_fall_back() ? std::min(options.auto_fallback_after, options.connect_timeout)
                                    : options.connect_timeout);
  ip_literal = parse_ip_literal(options.host, current_port).has_value();
  if (options.host.empty()) return close("dns: no host name configured");

  const std::string& host = options.proxy ? options.proxy->host : options.host;
  const std::uint16_t port = options.proxy ? options.proxy->port : current_port;
  if (auto literal = parse_ip_literal(host, port)) {
    addresses = {*literal};
    phase = Phase::Connecting;
    connect_next();
    return;
  }
  auto query = DnsQuery::start(
      event, host, port,
      [this](Expected<std::vector<SocketAddress>> result) { on_resolved(std::move(result)); });
  if (!query) return close("dns: " + host + ": " + query.error());
  dns = std::move(*query);
}

bool SecureChannel::Impl::may_fall_back() const {
  return options.transport == core::Transport::Auto && current == core::Transport::Mqtt;
}

// Auto: 8883 could not be reached (refused, silently dropped, or the proxy would not CONNECT
// to it). Port 443 is what restrictive networks leave open, so try WebSocket there. Only
// failures before TLS count: a TLS or MQTT failure on 8883 would repeat on 443.
void SecureChannel::Impl::fall_back(const std::string& reason) {
  first_try_error = std::to_string(current_port) + ": " + reason;
  connect_timer.cancel();
  dns.reset();
  tcp_source.reset();
  tcp.reset();
  proxy_parser.reset();
  handshake_out.clear();
  current = core::Transport::MqttWs;
  current_port = options.ws_port;
  begin_connect();
}

void SecureChannel::Impl::fail_connect(std::string reason) {
  if (may_fall_back()) return fall_back(reason);
  close(std::move(reason));
}

std::string SecureChannel::Impl::proxy_name() const {
  if (!options.proxy) return {};
  const std::string& host = options.proxy->host;
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(options.proxy->port);
}

std::string SecureChannel::Impl::target() const {
  const bool ipv6 = options.host.find(':') != std::string::npos;
  return (ipv6 ? "[" + options.host + "]" : options.host) + ":" + std::to_string(current_port);
}

void SecureChannel::Impl::on_resolved(Expected<std::vector<SocketAddress>> result) {
  dns.reset();  // we are inside its handler; DnsQuery allows that
  const std::string& host = options.proxy ? options.proxy->host : options.host;
  // Not a reason for Auto to fall back: the same name would fail the same way on 443.
  if (!result) return close("dns: " + host + ": " + result.error());
  if (result->empty()) return close("dns: " + host + ": no addresses");
  addresses = std::move(*result);
  phase = Phase::Connecting;
  connect_next();
}

// Tries the remaining addresses in order; one connect_timeout covers them all (and DNS), so a
// dead first address costs only its refusal, or at worst the whole budget.
void SecureChannel::Impl::connect_next() {
  tcp_source.reset();
  tcp.reset();
  while (next_address < addresses.size()) {
    const SocketAddress& address = addresses[next_address++];
    peer = address.to_string();
    UniqueFd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
      last_connect_error = "connect: " + peer + ": " + errno_text(errno);
      continue;
    }
    if (::connect(fd.get(), address.get(), address.length) == 0) {
      tcp = std::move(fd);
      return on_tcp_connected();
    }
    if (errno != EINPROGRESS) {
      last_connect_error = "connect: " + peer + ": " + errno_text(errno);
      continue;
    }
    sd_event_source* raw = nullptr;
    const int rc = sd_event_add_io(event, &raw, fd.get(), EPOLLOUT, &Impl::on_tcp_io, this);
    if (rc < 0) return close("connect: " + peer + ": sd_event_add_io: " + errno_text(-rc));
    tcp = std::move(fd);
    tcp_source.reset(raw);
    return;
  }
  fail_connect(last_connect_error.empty() ? "connect: " + options.host + ": no usable address"
                                          : last_connect_error);
}

void SecureChannel::Impl::on_tcp_writable() {
  int err = 0;
  socklen_t length = sizeof err;
  if (::getsockopt(tcp.get(), SOL_SOCKET, SO_ERROR, &err, &length) < 0) err = errno;
  if (err != 0) {
    last_connect_error = "connect: " + peer + ": " + errno_text(err);
    return connect_next();
  }
  on_tcp_connected();
}

void SecureChannel::Impl::on_tcp_connected() {
  // MQTT packets are small and latency-bound (PINGREQ, PUBACK); Nagle only delays them.
  const int one = 1;
  ::setsockopt(tcp.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (!tcp_source) {
    sd_event_source* raw = nullptr;
    const int rc = sd_event_add_io(event, &raw, tcp.get(), EPOLLOUT, &Impl::on_tcp_io, this);
    if (rc < 0) return close("connect: " + peer + ": sd_event_add_io: " + errno_text(-rc));
    tcp_source.reset(raw);
  }
  if (!options.proxy) {
    connect_timer.cancel();
    return begin_tls();
  }
  // The connect budget also covers the proxy's CONNECT: a proxy that cannot reach the target
  // often answers only after its own, longer timeout.
  phase = Phase::ProxyConnecting;
  handshake_out = core::proxy::build_connect_request(*options.proxy, options.host, current_port);
  proxy_parser.emplace(proxy_name());
  proxy_step();
}

void SecureChannel::Impl::proxy_step() {
  while (!handshake_out.empty()) {
    const ssize_t n = ::send(tcp.get(), handshake_out.data(), handshake_out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      handshake_out.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && would_block(errno)) return set_events(tcp_source.get(), EPOLLOUT);
    return fail_connect("proxy: " + proxy_name() + ": " + errno_text(errno));
  }
  std::array<char, 4096> buffer{};
  for (;;) {
    const ssize_t n = ::recv(tcp.get(), buffer.data(), buffer.size(), 0);
    if (n > 0) {
      const auto state = proxy_parser->feed(buffer.data(), static_cast<std::size_t>(n));
      if (state == core::proxy::ConnectResponseParser::State::Failed) {
        // Wrong or missing credentials fail the same way on every port: no fallback.
        if (proxy_parser->status() == 407) return close(proxy_parser->error());
        return fail_connect(proxy_parser->error());
      }
      if (state == core::proxy::ConnectResponseParser::State::Done) {
        // The TLS client speaks first, so the target cannot have sent anything yet.
        if (!proxy_parser->leftover().empty()) {
          return close("proxy: " + proxy_name() + ": sent data after its CONNECT answer");
        }
        connect_timer.cancel();
        proxy_parser.reset();
        return begin_tls();
      }
      continue;
    }
    if (n == 0) {
      return fail_connect("proxy: " + proxy_name() + ": closed the connection during CONNECT");
    }
    if (would_block(errno)) return set_events(tcp_source.get(), EPOLLIN);
    return fail_connect("proxy: " + proxy_name() + ": " + errno_text(errno));
  }
}

void SecureChannel::Impl::begin_tls() {
  phase = Phase::Handshaking;
  ERR_clear_error();
  ssl.reset(SSL_new(tls));
  if (!ssl) return close("TLS: cannot create connection: " + openssl_reason());
  // Partial writes let the relay hand SSL_write whatever it has and keep the rest buffered.
  SSL_set_mode(ssl.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

  // SNI is only defined for host names (RFC 6066); an IP literal is checked against the
  // certificate's IP SANs instead of its DNS names.
  bool names_ok = true;
  if (ip_literal) {
    names_ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), options.host.c_str()) == 1;
  } else {
    names_ok = SSL_set_tlsext_host_name(ssl.get(), options.host.c_str()) == 1 &&
               SSL_set1_host(ssl.get(), options.host.c_str()) == 1;
    // The name must match a DNS SAN: a certificate without SANs is not matched on its subject
    // CN (RFC 6125 6.4.4 leaves that to legacy clients; IoT Hub and DPS certificates carry
    // SANs), so "CN=localhost" alone proves nothing.
    SSL_set_hostflags(ssl.get(),
                      X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
  }
  if (!names_ok)
    return close("TLS: cannot check host name " + options.host + ": " + openssl_reason());

  bio_state.fd = tcp.get();
  BIO* bio = BIO_new(socket_bio_method());
  if (bio == nullptr) return close("TLS: cannot create BIO: " + openssl_reason());
  BIO_set_data(bio, &bio_state);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl.get(), bio, bio);  // the SSL owns the BIO from here on
  SSL_set_connect_state(ssl.get());

  handshake_timer.arm(options.handshake_timeout);
  handshake_step();
}

void SecureChannel::Impl::handshake_step() {
  ERR_clear_error();
  errno = 0;
  const int rc = SSL_do_handshake(ssl.get());
  if (rc == 1) {
    if (current == core::Transport::MqttWs) return begin_ws_upgrade();  // under the same timer
    handshake_timer.cancel();
    return open_listener();
  }
  const int saved_errno = errno;
  const int error = SSL_get_error(ssl.get(), rc);
  if (error == SSL_ERROR_WANT_READ) return set_events(tcp_source.get(), EPOLLIN);
  if (error == SSL_ERROR_WANT_WRITE) return set_events(tcp_source.get(), EPOLLOUT);

  // The chain or the name did not verify: say which check failed, in OpenSSL's words
  // ("hostname mismatch", "unable to get local issuer certificate").
  const long verify = SSL_get_verify_result(ssl.get());
  if (verify != X509_V_OK) {
    return close(std::string("TLS: certificate verify failed (") +
                 X509_verify_cert_error_string(verify) + ")");
  }
  std::string reason;
  if (error == SSL_ERROR_SSL && ERR_peek_error() != 0) {
    reason = openssl_reason();
  } else if (error == SSL_ERROR_ZERO_RETURN || saved_errno == 0 || bio_state.eof) {
    reason = std::string(kClosedByServer);
  } else {
    reason = errno_text(saved_errno);
  }
  close("TLS: handshake failed: " + reason);
}

// After TLS, so the upgrade request (and the server's answer) are private and authenticated.
void SecureChannel::Impl::begin_ws_upgrade() {
  phase = Phase::WsUpgrading;
  const std::string key = core::ws::make_key(random_bytes<16>());
  const bool ipv6 = options.host.find(':') != std::string::npos;
  std::string host_header = ipv6 ? "[" + options.host + "]" : options.host;
  if (current_port != 443) host_header += ":" + std::to_string(current_port);
  handshake_out = core::ws::build_upgrade_request(
      {.host = host_header, .path = options.ws_path, .key = key, .subprotocol = "mqtt"});
  ws_parser.emplace(key, "mqtt");
  ws_upgrade_step();
}

void SecureChannel::Impl::ws_upgrade_step() {
  while (!handshake_out.empty()) {
    ERR_clear_error();
    errno = 0;
    const int n =
        SSL_write(ssl.get(), handshake_out.data(), static_cast<int>(handshake_out.size()));
    if (n > 0) {
      handshake_out.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    const int saved_errno = errno;
    const int error = SSL_get_error(ssl.get(), n);
    if (error == SSL_ERROR_WANT_READ) return set_events(tcp_source.get(), EPOLLIN);
    if (error == SSL_ERROR_WANT_WRITE) return set_events(tcp_source.get(), EPOLLOUT);
    return close("WebSocket: upgrade failed: " + tls_io_error(error, saved_errno));
  }
  std::array<char, 4096> buffer{};
  for (;;) {
    ERR_clear_error();
    errno = 0;
    const int n = SSL_read(ssl.get(), buffer.data(), static_cast<int>(buffer.size()));
    if (n > 0) {
      const auto state = ws_parser->feed(buffer.data(), static_cast<std::size_t>(n));
      if (state == core::ws::UpgradeResponseParser::State::Failed) {
        return close(ws_parser->error());
      }
      if (state == core::ws::UpgradeResponseParser::State::Done) {
        handshake_timer.cancel();
        // Frames the server sent right behind its 101 (a CONNACK cannot come yet, but a ping
        // could) belong to the relay.
        const std::string leftover = ws_parser->leftover();
        ws_parser.reset();
        if (!leftover.empty() && !handle_ws_input(leftover.data(), leftover.size())) return;
        return open_listener();
      }
      continue;
    }
    const int saved_errno = errno;
    const int error = SSL_get_error(ssl.get(), n);
    if (error == SSL_ERROR_WANT_READ) return set_events(tcp_source.get(), EPOLLIN);
    if (error == SSL_ERROR_WANT_WRITE) return set_events(tcp_source.get(), EPOLLOUT);
    return close("WebSocket: upgrade failed: " + tls_io_error(error, saved_errno));
  }
}

// Unwraps server frames: data for libmosquitto, pings answered, a close answered and noted.
// Returns false after close() (a protocol violation).
bool SecureChannel::Impl::handle_ws_input(const char* data, std::size_t n) {
  core::ws::FrameDecoder::Events events;
  if (auto status = ws_decoder.feed(data, n, events); !status) {
    close(status.error());
    return false;
  }
  if (!gate_passes(events.data)) return false;
  ws_down += events.data;
  for (const std::string& ping : events.pings) {
    core::ws::encode_frame(core::ws::Opcode::Pong, ping, random_bytes<4>(), wire_out);
  }
  if (events.close_received && !ws_close_received) {
    ws_close_received = true;
    // Echo the status code (RFC 6455 5.5.1); the server then closes TCP.
    std::string body;
    if (events.close_code != 1005) {
      body += static_cast<char>(events.close_code >> 8);
      body += static_cast<char>(events.close_code & 0xff);
    }
    core::ws::encode_frame(core::ws::Opcode::Close, body, random_bytes<4>(), wire_out);
    if (events.close_code == 1000 || events.close_code == 1005) {
      ws_close_reason = std::string(kClosedByServer);
    } else {
      ws_close_reason = "WebSocket: closed by server: " + std::to_string(events.close_code);
      if (!events.close_reason.empty()) ws_close_reason += " " + events.close_reason;
    }
  }
  return true;
}

// The relay socket is created only now, after the server proved its identity: libmosquitto
// learns the path from on_ready, so no credential can be written before verification.
void SecureChannel::Impl::open_listener() {
  tcp_source.reset();  // quiet until the client is there; the kernel buffers the server's bytes
  socket_name =
      "mqtt-" + std::to_string(::getpid()) + "-" + std::to_string(++relay_socket_counter) + ".sock";
  socket_path = (options.socket_dir / socket_name).string();
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof address.sun_path) {
    return close("relay socket: path too long: " + socket_path);
  }
  // A symlink planted at socket_dir must not decide where the socket goes: the directory is
  // opened without following it and checked (ours, 0700), and the socket is bound through
  // that fd (/proc/self/fd/N/name resolves to the opened directory, not to the path again).
  auto dir = open_private_dir(options.socket_dir);
  if (!dir) return close("relay socket: " + dir.error());
  socket_dir_fd = std::move(*dir);
  const std::string bind_path =
      "/proc/self/fd/" + std::to_string(socket_dir_fd.get()) + "/" + socket_name;
  if (bind_path.size() >= sizeof address.sun_path) {
    return close("relay socket: path too long: " + bind_path);
  }
  std::memcpy(address.sun_path, bind_path.c_str(), bind_path.size() + 1);

  // A crashed predecessor with a recycled pid may have left the name behind.
  if (::unlinkat(socket_dir_fd.get(), socket_name.c_str(), 0) < 0 && errno != ENOENT) {
    return close("relay socket: " + socket_path + ": " + errno_text(errno));
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return close("relay socket: " + errno_text(errno));
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) < 0) {
    return close("relay socket: " + socket_path + ": " + errno_text(errno));
  }
  socket_file_exists = true;
  // A backlog above 1 so a stranger's pending connect cannot crowd out libmosquitto's.
  if (::listen(fd.get(), 8) < 0) {
    return close("relay socket: " + socket_path + ": " + errno_text(errno));
  }
  sd_event_source* raw = nullptr;
  const int rc = sd_event_add_io(event, &raw, fd.get(), EPOLLIN, &Impl::on_listen_io, this);
  if (rc < 0) return close("relay socket: sd_event_add_io: " + errno_text(-rc));
  listener = std::move(fd);
  listen_source.reset(raw);
  phase = Phase::Listening;
  schedule(ready_source, &Impl::on_ready_defer);
}

void SecureChannel::Impl::accept_clients() {
  for (;;) {
    UniqueFd fd(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      return close("relay socket: accept: " + errno_text(errno));
    }
    // Only this process may speak through our TLS session: the directory is 0700, but another
    // process of the same user must not borrow the authenticated channel either. Refused
    // connections are just closed; libmosquitto's may still be queued behind them.
    ucred credentials{};
    socklen_t length = sizeof credentials;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0 ||
        credentials.pid != ::getpid()) {
      continue;
    }
    sd_event_source* raw = nullptr;
    const int rc = sd_event_add_io(event, &raw, fd.get(), EPOLLIN, &Impl::on_client_io, this);
    if (rc < 0) return close("relay socket: sd_event_add_io: " + errno_text(-rc));
    client = std::move(fd);
    client_source.reset(raw);
    // Exactly one client: stop listening and take the name away at once.
    listen_source.reset();
    listener.reset();
    remove_socket_file();

    sd_event_source* tcp_raw = nullptr;
    const int tcp_rc = sd_event_add_io(event, &tcp_raw, tcp.get(), EPOLLIN, &Impl::on_tcp_io, this);
    if (tcp_rc < 0) return close("relay: sd_event_add_io: " + errno_text(-tcp_rc));
    tcp_source.reset(tcp_raw);
    phase = Phase::Relaying;
    return current == core::Transport::MqttWs ? pump_ws() : pump();
  }
}

// Moves bytes both ways until neither direction can make progress, then sleeps on exactly the
// readiness that would let one continue. SSL_read is retried while there is room even if the
// socket is not readable, which drains plaintext OpenSSL already holds (SSL_pending).
void SecureChannel::Impl::pump() {
  for (bool progress = true; progress;) {
    progress = false;

    if (!client_eof && up.space_size() > 0) {
      char* space = up.space();
      const ssize_t n = ::recv(client.get(), space, up.space_size(), 0);
      if (n > 0) {
        up.produced(static_cast<std::size_t>(n));
        progress = true;
      } else if (n == 0) {
        client_eof = true;
        progress = true;
      } else if (!would_block(errno)) {
        return close(std::string(kClosedByClient));
      }
    }

    if (!up.empty()) {
      ERR_clear_error();
      errno = 0;
      const int n = SSL_write(ssl.get(), up.data(), static_cast<int>(up.size()));
      if (n > 0) {
        up.consumed(static_cast<std::size_t>(n));
        progress = true;
      } else {
        const int saved_errno = errno;
        const int error = SSL_get_error(ssl.get(), n);
        if (error == SSL_ERROR_WANT_READ) {
          write_want = Want::Read;
        } else if (error == SSL_ERROR_WANT_WRITE) {
          write_want = Want::Write;
        } else {
          return close(tls_io_error(error, saved_errno));
        }
      }
    }

    if (!server_eof && down.space_size() > 0) {
      ERR_clear_error();
      errno = 0;
      char* space = down.space();
      const int n = SSL_read(ssl.get(), space, static_cast<int>(down.space_size()));
      if (n > 0) {
        if (!gate_passes(std::string_view(space, static_cast<std::size_t>(n)))) return;
        down.produced(static_cast<std::size_t>(n));
        progress = true;
      } else {
        const int saved_errno = errno;
        const int error = SSL_get_error(ssl.get(), n);
        if (error == SSL_ERROR_WANT_READ) {
          read_want = Want::Read;
        } else if (error == SSL_ERROR_WANT_WRITE) {
          read_want = Want::Write;
        } else {
          std::string reason = tls_io_error(error, saved_errno);
          if (reason != kClosedByServer) return close(std::move(reason));
          server_eof = true;  // deliver what we already have before saying so
          progress = true;
        }
      }
    }

    if (down_ready() > 0) {
      const ssize_t n = ::send(client.get(), down.data(), down_ready(), MSG_NOSIGNAL);
      if (n > 0) {
        down.consumed(static_cast<std::size_t>(n));
        progress = true;
      } else if (n < 0 && !would_block(errno)) {
        return close(std::string(kClosedByClient));
      }
    }
  }

  // Held-back bytes are the start of a header that will never be finished: not worth waiting.
  if (server_eof && down_ready() == 0) return close(std::string(kClosedByServer));
  if (client_eof && up.empty()) {
    SSL_shutdown(ssl.get());  // best effort close_notify; we do not wait for the reply
    return close(std::string(kClosedByClient));
  }
  update_interest();
}

// A refused packet ends the channel before any of its bytes reach libmosquitto, which would
// otherwise buffer all of it (see core/mqtt_inbound_gate.hpp). The reason is the gate's, so the
// daemon reports "DPS sent a QoS 2 PUBLISH, …" as its LastError.
bool SecureChannel::Impl::gate_passes(std::string_view from_server) {
  if (auto status = gate.feed(from_server); !status) {
    close(status.error());
    return false;
  }
  return true;
}

// pump() for WebSocket: client bytes become one masked binary frame per read (MQTT does not
// care where frames end), server frames are unwrapped, and control frames are answered.
void SecureChannel::Impl::pump_ws() {
  std::array<char, std::size_t{16} * 1024> buffer{};
  for (bool progress = true; progress;) {
    progress = false;

    if (!client_eof && up.space_size() > 0) {
      char* space = up.space();
      const ssize_t n = ::recv(client.get(), space, up.space_size(), 0);
      if (n > 0) {
        up.produced(static_cast<std::size_t>(n));
        progress = true;
      } else if (n == 0) {
        client_eof = true;
        progress = true;
      } else if (!would_block(errno)) {
        return close(std::string(kClosedByClient));
      }
    }

    // After the server's close frame nothing but our reply may follow (RFC 6455 5.5.1).
    if (!up.empty() && !ws_close_received && wire_out.size() < kWsWireHighWater) {
      core::ws::encode_frame(core::ws::Opcode::Binary, std::string_view(up.data(), up.size()),
                             random_bytes<4>(), wire_out);
      up.consumed(up.size());
      progress = true;
    }

    if (!wire_out.empty()) {
      ERR_clear_error();
      errno = 0;
      const int n = SSL_write(ssl.get(), wire_out.data(), static_cast<int>(wire_out.size()));
      if (n > 0) {
        wire_out.erase(0, static_cast<std::size_t>(n));
        progress = true;
      } else {
        const int saved_errno = errno;
        const int error = SSL_get_error(ssl.get(), n);
        if (error == SSL_ERROR_WANT_READ) {
          write_want = Want::Read;
        } else if (error == SSL_ERROR_WANT_WRITE) {
          write_want = Want::Write;
        } else {
          return close(tls_io_error(error, saved_errno));
        }
      }
    }

    if (!server_eof && !ws_close_received && ws_down.size() < kWsDownHighWater) {
      ERR_clear_error();
      errno = 0;
      const int n = SSL_read(ssl.get(), buffer.data(), static_cast<int>(buffer.size()));
      if (n > 0) {
        if (!handle_ws_input(buffer.data(), static_cast<std::size_t>(n))) return;
        progress = true;
      } else {
        const int saved_errno = errno;
        const int error = SSL_get_error(ssl.get(), n);
        if (error == SSL_ERROR_WANT_READ) {
          read_want = Want::Read;
        } else if (error == SSL_ERROR_WANT_WRITE) {
          read_want = Want::Write;
        } else {
          std::string reason = tls_io_error(error, saved_errno);
          if (reason != kClosedByServer) return close(std::move(reason));
          server_eof = true;
          progress = true;
        }
      }
    }

    if (ws_down_ready() > 0) {
      const ssize_t n = ::send(client.get(), ws_down.data(), ws_down_ready(), MSG_NOSIGNAL);
      if (n > 0) {
        ws_down.erase(0, static_cast<std::size_t>(n));
        progress = true;
      } else if (n < 0 && !would_block(errno)) {
        return close(std::string(kClosedByClient));
      }
    }
  }

  if (ws_close_received && wire_out.empty() && ws_down_ready() == 0) return close(ws_close_reason);
  if (server_eof && ws_down_ready() == 0) return close(std::string(kClosedByServer));
  if (client_eof && up.empty() && wire_out.empty()) {
    // Best effort, like close_notify: a close frame (1000) and we are gone.
    std::string bye;
    core::ws::encode_frame(core::ws::Opcode::Close, std::string_view("\x03\xe8", 2),
                           random_bytes<4>(), bye);
    ERR_clear_error();
    SSL_write(ssl.get(), bye.data(), static_cast<int>(bye.size()));
    SSL_shutdown(ssl.get());
    return close(std::string(kClosedByClient));
  }
  update_interest_ws();
}

void SecureChannel::Impl::update_interest_ws() {
  std::uint32_t tcp_events = 0;
  if (!server_eof && !ws_close_received && ws_down.size() < kWsDownHighWater) {
    tcp_events |= epoll_for(read_want);
  }
  if (!wire_out.empty()) tcp_events |= epoll_for(write_want);
  set_events(tcp_source.get(), tcp_events);

  std::uint32_t client_events = 0;
  if (!client_eof && up.space_size() > 0) client_events |= EPOLLIN;
  if (ws_down_ready() > 0) client_events |= EPOLLOUT;
  set_events(client_source.get(), client_events);
}

// A direction only contributes to the wait when it still has work; a drained or stopped one
// must not keep the source enabled or level-triggered epoll would spin.
void SecureChannel::Impl::update_interest() {
  std::uint32_t tcp_events = 0;
  if (!server_eof && down.space_size() > 0) tcp_events |= epoll_for(read_want);
  if (!up.empty()) tcp_events |= epoll_for(write_want);
  set_events(tcp_source.get(), tcp_events);

  std::uint32_t client_events = 0;
  if (!client_eof && up.space_size() > 0) client_events |= EPOLLIN;
  if (down_ready() > 0) client_events |= EPOLLOUT;
  set_events(client_source.get(), client_events);
}

void SecureChannel::Impl::set_events(sd_event_source* source, std::uint32_t events) {
  if (source == nullptr) return;
  if (events == 0) {
    sd_event_source_set_enabled(source, SD_EVENT_OFF);
    return;
  }
  sd_event_source_set_io_events(source, events);
  sd_event_source_set_enabled(source, SD_EVENT_ON);
}

std::string SecureChannel::Impl::tls_io_error(int ssl_error, int saved_errno) {
  if (ssl_error == SSL_ERROR_ZERO_RETURN) return std::string(kClosedByServer);
  if (ssl_error == SSL_ERROR_SSL) {
    // OpenSSL 3 reports a TCP close without close_notify this way; for MQTT, whose packets are
    // self-delimiting, that is an ordinary close (brokers and load balancers do it).
    if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      ERR_clear_error();
      return std::string(kClosedByServer);
    }
    return "TLS: " + openssl_reason();
  }
  if (ssl_error == SSL_ERROR_SYSCALL) {
    if (saved_errno == 0 || saved_errno == EPIPE || bio_state.eof) {
      return std::string(kClosedByServer);
    }
    if (saved_errno == ECONNRESET) return "connection reset by server";
    return "connection to server lost: " + errno_text(saved_errno);
  }
  return "TLS: error " + std::to_string(ssl_error);
}

void SecureChannel::Impl::on_connect_timeout() {
  if (phase != Phase::Resolving && phase != Phase::Connecting && phase != Phase::ProxyConnecting)
    return;
  const auto budget = may_fall_back()
                          ? std::min(options.auto_fallback_after, options.connect_timeout)
                          : options.connect_timeout;
  const std::string after = "timed out after " + std::to_string(budget.count()) + " ms";
  if (phase == Phase::ProxyConnecting) {
    return fail_connect("proxy: " + proxy_name() + ": CONNECT " + target() + " " + after);
  }
  fail_connect("connect: " + (options.proxy ? proxy_name() : target()) + ": " + after);
}

void SecureChannel::Impl::on_handshake_timeout() {
  const std::string after =
      "timed out after " + std::to_string(options.handshake_timeout.count()) + " ms";
  if (phase == Phase::Handshaking) return close("TLS: handshake " + after);
  if (phase == Phase::WsUpgrading) return close("WebSocket: upgrade " + after);
}

// Tears everything down now and reports later, from a defer source: close() runs deep inside
// our own callbacks, and the handler may destroy the channel, so it must run where nothing of
// ours is left on the stack. Destroying the channel first cancels the report.
void SecureChannel::Impl::close(std::string reason) {
  if (phase == Phase::Closed) return;
  // Auto: when WebSocket fails too, the first reason is half the story.
  if (!first_try_error.empty() && phase != Phase::Relaying && phase != Phase::Listening) {
    reason += " (after port " + first_try_error + ")";
  }
  phase = Phase::Closed;
  close_reason = std::move(reason);

  connect_timer.cancel();
  handshake_timer.cancel();
  dns.reset();
  ready_source.reset();
  tcp_source.reset();
  listen_source.reset();
  client_source.reset();
  ssl.reset();
  client.reset();
  listener.reset();
  tcp.reset();
  remove_socket_file();

  schedule(closed_source, &Impl::on_closed_defer);
}

void SecureChannel::Impl::schedule(EventSourcePtr& slot, sd_event_handler_t handler) {
  sd_event_source* raw = nullptr;
  if (sd_event_add_defer(event, &raw, handler, this) < 0) {
    // Out of memory in the loop itself; nothing sensible is left to do but not crash.
    return;
  }
  slot.reset(raw);
}

// Through the directory fd it was created in, so a swapped path cannot redirect the unlink.
void SecureChannel::Impl::remove_socket_file() {
  if (socket_file_exists) ::unlinkat(socket_dir_fd.get(), socket_name.c_str(), 0);
  socket_file_exists = false;
  socket_dir_fd.reset();
}

int SecureChannel::Impl::on_tcp_io(sd_event_source* /*source*/, int /*fd*/, uint32_t /*revents*/,
                                   void* userdata) {
  auto* self = static_cast<Impl*>(userdata);
  switch (self->phase) {
    case Phase::Connecting:
      self->on_tcp_writable();
      break;
    case Phase::ProxyConnecting:
      self->proxy_step();
      break;
    case Phase::Handshaking:
      self->handshake_step();
      break;
    case Phase::WsUpgrading:
      self->ws_upgrade_step();
      break;
    case Phase::Relaying:
      self->current == core::Transport::MqttWs ? self->pump_ws() : self->pump();
      break;
    default:
      break;
  }
  return 0;
}

int SecureChannel::Impl::on_listen_io(sd_event_source* /*source*/, int /*fd*/, uint32_t /*revents*/,
                                      void* userdata) {
  auto* self = static_cast<Impl*>(userdata);
  if (self->phase == Phase::Listening) self->accept_clients();
  return 0;
}

int SecureChannel::Impl::on_client_io(sd_event_source* /*source*/, int /*fd*/, uint32_t /*revents*/,
                                      void* userdata) {
  auto* self = static_cast<Impl*>(userdata);
  if (self->phase == Phase::Relaying) {
    self->current == core::Transport::MqttWs ? self->pump_ws() : self->pump();
  }
  return 0;
}

int SecureChannel::Impl::on_ready_defer(sd_event_source* /*source*/, void* userdata) {
  auto* self = static_cast<Impl*>(userdata);
  self->ready_source.reset();
  // The handler may destroy the channel: take what it needs first, touch nothing after.
  ReadyHandler handler = std::move(self->on_ready);
  const std::string path = self->socket_path;
  if (handler) handler(path);
  return 0;
}

int SecureChannel::Impl::on_closed_defer(sd_event_source* /*source*/, void* userdata) {
  auto* self = static_cast<Impl*>(userdata);
  self->closed_source.reset();
  ClosedHandler handler = std::move(self->on_closed);
  const std::string reason = self->close_reason;
  if (handler) handler(reason);
  return 0;
}

SecureChannel::SecureChannel(sd_event* event, SSL_CTX* tls, ChannelOptions options,
                             ReadyHandler on_ready, ClosedHandler on_closed)
    : impl_(std::make_unique<Impl>(event, tls, std::move(options), std::move(on_ready),
                                   std::move(on_closed))) {}

SecureChannel::~SecureChannel() = default;

void SecureChannel::start() {
  impl_->start();
}

std::string SecureChannel::peer() const {
  return impl_->peer;
}

core::Transport SecureChannel::transport_used() const {
  return impl_->current;
}

}  // namespace dpsd::io
