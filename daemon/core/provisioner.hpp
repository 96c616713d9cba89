#pragma once
// One DPS registration, as a pure state machine: events in (connected, message, timer, connection
// lost), actions out (open connection, subscribe, publish, start/cancel timer, close, finished).
// No sockets, no clock, no keys: the adapters in io/ and app/ carry the actions out and feed
// the results back. Every branch is unit-tested in tests/unit/test_provisioner.cpp.
//
// The flow (shared/dps-protocol.md section 0): CONNECT → SUBSCRIBE res/# → PUBLISH register
// (pipelined right behind the SUBSCRIBE: the broker handles one connection's packets in order,
// so the subscription is in place before the register is routed; a lost reply is still caught by
// the response timer) → 202 + retry-after → poll … → 200 assigned | failed | disabled.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/dps_messages.hpp"

namespace dpsd::core {

struct RegistrationRequest {
  std::string id_scope;
  std::string registration_id;
  std::optional<std::string> payload_json;  // custom payload, already validated JSON
  std::string client_version;               // dpsd's version, sent as ClientVersion
  // How long to wait for CONNACK once the transport is asked to open (covers DNS, TCP, TLS).
  std::chrono::milliseconds connect_timeout{20000};
  // How long to wait for DPS to answer one request before the attempt counts as failed.
  std::chrono::milliseconds response_timeout{30000};
};

// --- the policy knobs, with the reasons for their values ---------------------------------------
// DPS's retry-after is honoured within these bounds: below 1 s we would hammer the service if it
// said 0 (the C SDK clamps to 1 s too); above 5 min we ask again rather than sleep for hours.
inline constexpr std::chrono::milliseconds kMinPollInterval{1000};
inline constexpr std::chrono::milliseconds kMaxPollInterval{300000};
// No retry-after, or one that is not a number: the Node and Python SDKs wait 2 s.
inline constexpr std::chrono::milliseconds kDefaultPollInterval{2000};
// A DPS that says "assigning" forever must not keep us connected forever.
inline constexpr int kMaxPolls = 100;
// 429/5xx with a short retry-after are retried on the same connection this many times; a longer
// wait, or more throttling, ends the attempt and lets the caller's backoff take over.
inline constexpr int kMaxInConnectionRetries = 5;
inline constexpr std::chrono::milliseconds kMaxInConnectionRetryDelay{60000};

enum class TimerId { Response, Poll, Retry };

// ---- events -------------------------------------------------------------------------------------
struct Connected {};  // CONNACK accepted (rc 0)
struct ConnectRefused {
  int connack_rc = 0;
};
struct MessageReceived {
  std::string topic;
  std::string payload;
};
struct TimerFired {
  TimerId id;
};
struct ConnectionLost {
  std::string reason;  // from the transport, e.g. "TLS: certificate verify failed (…)"
};
using Event = std::variant<Connected, ConnectRefused, MessageReceived, TimerFired, ConnectionLost>;

// ---- actions ------------------------------------------------------------------------------------
struct OpenConnection {
  std::string client_id;
  std::string username;  // the password (SAS token) is the adapter's business: no keys here
};
struct Subscribe {
  std::string topic;
  int qos = 1;
};
struct Publish {
  std::string topic;
  std::string payload;
  int qos = 1;
};
struct StartTimer {
  TimerId id;
  std::chrono::milliseconds delay;
};
struct CancelTimer {
  TimerId id;
};
struct CloseConnection {};
enum class LogLevel { Debug, Info, Notice, Warning, Error };
struct Log {
  LogLevel level;
  std::string message;
};

enum class OutcomeKind {
  Assigned,   // registration_state holds the assignment
  Refused,    // DPS said no (401, 404, failed, disabled, CONNACK not authorised): needs attention
  Transient,  // network, timeout, throttling, malformed reply: try again later
};
struct Outcome {
  OutcomeKind kind = OutcomeKind::Transient;
  std::optional<RegistrationState> registration_state;
  std::string error;  // in words; empty when assigned
  std::optional<std::int64_t> dps_error_code;
  std::optional<std::chrono::milliseconds> retry_after;  // DPS's hint, for the caller's backoff
  std::string operation_id;
};
struct Finished {
  Outcome outcome;
};

using Action = std::variant<OpenConnection, Subscribe, Publish, StartTimer, CancelTimer,
                            CloseConnection, Log, Finished>;
using Actions = std::vector<Action>;

class Registration {
 public:
  explicit Registration(RegistrationRequest request);

  Actions start();
  Actions handle(const Event& event);
  bool finished() const { return phase_ == Phase::Finished; }
  const std::string& operation_id() const { return operation_id_; }

 private:
  enum class Phase { Idle, Connecting, AwaitingReply, WaitingToPoll, WaitingToRetry, Finished };

  Actions on(const Connected&);
  Actions on(const ConnectRefused&);
  Actions on(const MessageReceived&);
  Actions on(const TimerFired&);
  Actions on(const ConnectionLost&);

  Actions on_operation_status(int status, std::string_view body,
                              std::optional<std::chrono::milliseconds> retry_after);
  Actions on_throttled(int status, std::string_view body,
                       std::optional<std::chrono::milliseconds> retry_after);
  Actions on_refused(int status, std::string_view body);

  // Publishes the register request (no operation id yet) or a poll, under a fresh $rid.
  Actions send_request();
  Actions finish(Outcome outcome);

  RegistrationRequest request_;
  Phase phase_ = Phase::Idle;
  std::uint64_t next_rid_ = 1;
  std::string pending_rid_;
  std::string operation_id_;
  int polls_ = 0;
  int in_connection_retries_ = 0;
};

// Clamps DPS's retry-after per the bounds above; nullopt (absent or malformed) → the default.
std::chrono::milliseconds poll_interval(std::optional<std::chrono::milliseconds> retry_after);

}  // namespace dpsd::core
