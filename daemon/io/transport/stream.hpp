#pragma once
// The one interface between the secure channel's stages: a non-blocking byte stream (TCP, TLS
// over it, WebSocket over that) that says which poll events would let it continue and, once it
// ended, why, as a CloseReason. Setting a stage up (a proxy's CONNECT, the TLS handshake, the
// WebSocket upgrade) is a Handshake, stepped by whoever watches the socket.
//
// Why not callbacks per read (as mender's AsyncReader has): every stage runs on the one loop
// thread over the same socket, so one owner can watch the socket and pull bytes through all
// stages in a single pump, and back-pressure is simply not reading.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

namespace dpsd::io::transport {

// Why a stream or a stage ended. The words people read are made from it in one place,
// describe(), so the reasons dpsd logs and reports stay the same whichever stage saw them.
enum class CloseReason {
  PeerClosed,          // the server closed in order (FIN, close_notify, WebSocket close 1000)
  PeerClosedWithCode,  // a WebSocket close frame with another status; detail: "1001 going away"
  LocalClose,          // our side (libmosquitto) closed, or its socket failed
  Reset,               // ECONNRESET; detail: errno's words
  Lost,                // any other socket error; detail: errno's words
  Timeout,             // a phase's budget ran out; Close::budget says which
  Unreachable,         // no address could be connected; detail: the last error
  NameNotResolved,     // DNS said no; detail: the resolver's words
  Refused,             // the peer answered no (proxy CONNECT, WebSocket upgrade); detail: why
  VerifyFailed,        // the server's certificate or name did not verify; detail: OpenSSL's words
  TlsFailure,          // any other TLS error; detail: OpenSSL's words
  ProtocolError,       // the peer broke the protocol (a bad frame); detail: the sentence
  GateRefused,         // core::MqttInboundGate refused what the server sent; detail: its sentence
  SetupFailed,         // a local resource could not be made (socket, SSL, event source)
};

// Where it happened: the same reason reads differently while connecting and while relaying
// ("TLS: handshake failed: connection closed by server" / "connection closed by server").
enum class Stage { Dns, Connect, Proxy, Tls, WebSocket, RelaySocket, Relay };

struct Close {
  Close() = default;
  explicit Close(CloseReason why, Stage in = Stage::Relay, std::string what = {},
                 std::string at = {})
      : reason(why), stage(in), detail(std::move(what)), where(std::move(at)) {}
  static Close timeout(Stage in, std::chrono::milliseconds after, std::string at = {},
                       std::string what = {}) {
    Close close(CloseReason::Timeout, in, std::move(what), std::move(at));
    close.budget = after;
    return close;
  }

  CloseReason reason = CloseReason::PeerClosed;
  Stage stage = Stage::Relay;
  std::string detail;  // see CloseReason
  std::string where;   // the name or address it concerns: "127.0.0.1:8883", a proxy's host:port
  std::chrono::milliseconds budget{0};  // Timeout: the budget that ran out
  // Auto's fallback: "8883: <why the first port failed>", appended to a failure of the second.
  std::string first_try;
};

// The one mapping from a Close to the sentence dpsd prints and reports as LastError.
std::string describe(const Close& close);

// One read() or write(): bytes moved, or nothing yet (wait for wanted_events()), or the end.
struct IoResult {
  enum class Status { Ok, WouldBlock, Closed };
  Status status = Status::Ok;
  std::size_t bytes = 0;  // Ok: how many; write() may take fewer than offered

  static IoResult ok(std::size_t n) { return {Status::Ok, n}; }
  static IoResult would_block() { return {Status::WouldBlock, 0}; }
  static IoResult closed() { return {Status::Closed, 0}; }
};

// The base of the two interfaces below: polymorphic, owned through one pointer, never copied.
class Interface {
 public:
  Interface() = default;
  virtual ~Interface() = default;
  Interface(const Interface&) = delete;
  Interface& operator=(const Interface&) = delete;
};

class Stream : public Interface {
 public:
  virtual IoResult read(char* data, std::size_t size) = 0;
  // size 0 only pushes out what earlier writes left inside the stream (has_pending_output()).
  virtual IoResult write(const char* data, std::size_t size) = 0;
  // The poll events on fd() that let a blocked read (reading) or write (writing) continue; 0
  // when neither can make progress through the socket (level-triggered epoll must not spin).
  virtual std::uint32_t wanted_events(bool reading, bool writing) const = 0;
  // Best-effort goodbye (close_notify, a WebSocket close frame), never blocking.
  virtual void shutdown() = 0;
  virtual int fd() const = 0;
  // Why read() or write() returned Closed.
  virtual const Close& close_reason() const = 0;

  // Bytes write() accepted that still wait inside this stream (framed, not yet sent).
  virtual bool has_pending_output() const { return false; }
  // Bytes read() can return without the socket (WebSocket frames that came with the upgrade).
  virtual bool has_buffered_input() const { return false; }
};

enum class Progress { Pending, Done, Failed };

// A stage's setup, stepped until Done or Failed. Pending: step again when wanted_events()
// fire on the stream's fd. Failed: failure() says why.
class Handshake : public Interface {
 public:
  virtual Progress step() = 0;
  virtual std::uint32_t handshake_events() const = 0;
  virtual const Close& failure() const = 0;
};

// A stage stacked on the stream below it with a handshake of its own (TLS, WebSocket): it owns
// that stream (destroyed after the stage's own state, which may point into it), shares its fd,
// and has one Close for both the handshake and the data.
class LayeredStream : public Stream, public Handshake {
 public:
  explicit LayeredStream(std::unique_ptr<Stream> below) : below_(std::move(below)) {}

  int fd() const final { return below_->fd(); }
  const Close& close_reason() const final { return close_; }
  const Close& failure() const final { return close_; }

 protected:
  std::unique_ptr<Stream> below_;
  Close close_;
};

}  // namespace dpsd::io::transport
