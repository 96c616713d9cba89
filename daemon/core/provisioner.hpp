#pragma once
// One DPS registration, as a pure state machine: events in (connected, message, timer, connection
// lost), actions out (open connection, subscribe, publish, start/cancel timer, close, finished).
// No sockets, no clock, no keys: the adapters in io/ and app/ carry the actions out and feed
// the results back. Every branch is unit-tested in tests/unit/test_provisioner.cpp.
//
// The flow (shared/dps-protocol.md section 0): CONNECT → SUBSCRIBE res/# → SUBACK → PUBLISH
// register → 202 + retry-after → poll … → 200 assigned | failed | disabled.
//
// The register waits for the SUBACK, as every official client does (azure-iot-sdk-c moves to
// SUBSCRIBED on the SUBACK; C# and Node publish from the SUBACK handler): DPS is a distributed
// front end, not one broker, and a request published before its subscription is active may
// never be answered. That costs one round trip and saves a 30 s timeout plus a second, billed
// registration.
//
// An accepted registration (202 + operationId) is an operation that lives on the service across
// connections. A request that carries resume_operation_id polls that operation first instead of
// registering again, and registers afresh only when DPS says it does not know it.
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/dps_messages.hpp"
#include "core/log_level.hpp"

namespace dpsd::core {

struct RegistrationRequest {
  std::string id_scope;
  std::string registration_id;
  std::optional<std::string> payload_json;  // custom payload, already validated JSON
  std::string client_version;               // dpsd's version, sent as ClientVersion
  // How long to wait for CONNACK once the transport is asked to open (covers DNS, TCP, TLS).
  std::chrono::milliseconds connect_timeout{20000};
  // How long to wait for DPS to answer one request (the SUBACK included) before the attempt
  // counts as failed.
  std::chrono::milliseconds response_timeout{30000};
  // The most a 429/409/5xx retry-after can make us wait ([retry] max): a throttled device is not
  // parked for a day because one reply said 86400.
  std::chrono::milliseconds retry_max{300000};
  // A bound on the whole attempt, however DPS paces it: an endless "assigning" must end, so the
  // caller's --timeout and Reprovision stay meaningful.
  std::chrono::milliseconds attempt_limit{600000};
  // An operation a previous attempt left running on the service: poll it instead of registering.
  std::string resume_operation_id;
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
// 429/409/412/5xx with a short retry-after are retried on the same connection this many times; a
// longer wait, no retry-after (the caller's jittered backoff is better than a fixed guess), or
// more throttling, ends the attempt and lets the caller's backoff take over.
inline constexpr int kMaxInConnectionRetries = 5;
inline constexpr std::chrono::milliseconds kMaxInConnectionRetryDelay{60000};
// The shortest retry a retry-after can ask for: 0 would hammer the service.
inline constexpr std::chrono::milliseconds kMinRetryDelay{1000};
// Replies that match no request (a wrong $rid, an unrelated topic) are ignored; this many on one
// connection is a flood, and the attempt ends rather than spend CPU and log on it.
inline constexpr int kMaxStrayMessages = 32;
// MQTT SUBACK return code for a refused subscription (MQTT 3.1.1 section 3.9.3).
inline constexpr int kSubackFailure = 0x80;

enum class TimerId { Response, Poll, Retry, Attempt };

// ---- events -------------------------------------------------------------------------------------
struct Connected {};  // CONNACK accepted (rc 0)
struct SubscribeAcked {
  int granted_qos = 0;  // 0, 1, 2, or kSubackFailure when DPS refused the subscription
};
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
using Event = std::variant<Connected, SubscribeAcked, ConnectRefused, MessageReceived, TimerFired,
                           ConnectionLost>;

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
  bool poll = false;  // an operation-status poll (DPS limits those per device), not a register
};
struct StartTimer {
  TimerId id;
  std::chrono::milliseconds delay;
};
struct CancelTimer {
  TimerId id;
};
struct CloseConnection {};
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
  std::optional<std::chrono::milliseconds> retry_after;  // DPS's hint, clamped to retry_max
  // The operation this attempt leaves running on the service, for the next attempt to resume;
  // empty when there is none (assigned, refused, unknown to DPS, or never accepted).
  std::string operation_id;
};
struct Finished {
  Outcome outcome;
};
// A transient setback the attempt rides out itself (a 429/409/5xx with a short retry-after): the
// supervisor shows it (State retrying, LastError) while the attempt waits.
struct Retrying {
  std::string reason;
};

using Action = std::variant<OpenConnection, Subscribe, Publish, StartTimer, CancelTimer,
                            CloseConnection, Log, Finished, Retrying>;
using Actions = std::vector<Action>;

class Registration {
 public:
  explicit Registration(RegistrationRequest request);

  Actions start();
  Actions handle(const Event& event);
  bool finished() const { return phase_ == Phase::Finished; }
  const std::string& operation_id() const { return operation_id_; }

 private:
  enum class Phase {
    Idle,
    Connecting,
    Subscribing,
    AwaitingReply,
    WaitingToPoll,
    WaitingToRetry,
    Finished
  };

  Actions on(const Connected&);
  Actions on(const SubscribeAcked&);
  Actions on(const ConnectRefused&);
  Actions on(const MessageReceived&);
  Actions on(const TimerFired&);
  Actions on(const ConnectionLost&);

  Actions on_operation_status(int status, std::string_view body,
                              std::optional<std::chrono::milliseconds> retry_after);
  Actions on_throttled(int status, std::string_view body,
                       std::optional<std::chrono::milliseconds> retry_after);
  Actions on_refused(int status, std::string_view body);
  Actions on_stray(std::string why);

  // Publishes the register request (no operation id yet) or a poll, under a fresh $rid.
  Actions send_request();
  Actions finish(Outcome outcome);
  Actions finish_transient(std::string error);

  RegistrationRequest request_;
  Phase phase_ = Phase::Idle;
  std::uint64_t next_rid_ = 1;
  std::string pending_rid_;
  std::string operation_id_;
  int polls_ = 0;
  int in_connection_retries_ = 0;
  int stray_messages_ = 0;
  bool awaiting_poll_reply_ = false;  // the request in flight is a poll
  bool registered_afresh_ = false;    // a resumed operation was unknown; we registered again
};

// A 202's poll wait: DPS's retry-after clamped to [1 s, 5 min]; nullopt (absent or not a
// number) → 2 s.
std::chrono::milliseconds poll_interval(std::optional<std::chrono::milliseconds> retry_after);
// A 429/409/412/5xx retry: DPS's retry-after clamped to [1 s, retry_max]; nullopt → nullopt (the
// caller's jittered backoff decides).
std::optional<std::chrono::milliseconds> retry_delay(
    std::optional<std::chrono::milliseconds> retry_after, std::chrono::milliseconds retry_max);

}  // namespace dpsd::core
