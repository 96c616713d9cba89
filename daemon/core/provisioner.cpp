#include "core/provisioner.hpp"

#include <algorithm>
#include <utility>

#include "core/reply_validation.hpp"
#include "core/topics.hpp"

namespace dpsd::core {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string seconds_text(milliseconds delay) {
  const auto ms = delay.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

std::string status_name(int status) {
  struct Name {
    int status;
    const char* text;
  };
  static constexpr Name kNames[] = {
      {400, "400 Bad Request"},
      {401, "401 Unauthorized"},
      {403, "403 Forbidden"},
      {404, "404 Not Found"},
      {409, "409 Conflict"},
      {412, "412 Precondition Failed"},
      {429, "429 Too Many Requests"},
      {500, "500 Internal Server Error"},
      {503, "503 Service Unavailable"},
  };
  for (const Name& name : kNames) {
    if (name.status == status) return name.text;
  }
  return std::to_string(status);
}

// "errorCode 401002: Invalid certificate." or "" when DPS said nothing useful.
std::string describe_service_error(const ServiceError& error) {
  std::string text;
  if (error.error_code) text = "errorCode " + std::to_string(*error.error_code);
  if (!error.message.empty()) text += (text.empty() ? "" : ": ") + error.message;
  return text;
}

std::string connack_reason(int rc) {
  // MQTT 3.1.1 section 3.2.2.3, return codes 1 to 5.
  static constexpr const char* kReasons[] = {"unacceptable protocol version", "identifier rejected",
                                             "server unavailable", "bad user name or password",
                                             "not authorized"};
  if (rc >= 1 && rc <= 5) return kReasons[rc - 1];
  return "reason " + std::to_string(rc);
}

// 409 and 412 are races with another registration of the same id (errorCode 409203,
// "Precondition failed."; azure-iot-sdk-c tests/common_prov_e2e retries them): transient.
bool is_conflict(int status) {
  return status == 409 || status == 412;
}

bool is_transient_status(int status) {
  return status == 429 || is_conflict(status) || status >= 500;
}

}  // namespace

milliseconds poll_interval(std::optional<milliseconds> retry_after) {
  if (!retry_after) return kDefaultPollInterval;
  return std::clamp(*retry_after, kMinPollInterval, kMaxPollInterval);
}

std::optional<milliseconds> retry_delay(std::optional<milliseconds> retry_after,
                                        milliseconds retry_max) {
  if (!retry_after) return std::nullopt;
  return std::clamp(*retry_after, kMinRetryDelay, std::max(retry_max, kMinRetryDelay));
}

Registration::Registration(RegistrationRequest request)
    : request_(std::move(request)), operation_id_(request_.resume_operation_id) {}

Actions Registration::start() {
  phase_ = Phase::Connecting;
  return {OpenConnection{
              request_.registration_id,
              mqtt_username(request_.id_scope, request_.registration_id, request_.client_version)},
          StartTimer{TimerId::Attempt, request_.attempt_limit},
          StartTimer{TimerId::Response, request_.connect_timeout}};
}

Actions Registration::handle(const Event& event) {
  if (phase_ == Phase::Finished || phase_ == Phase::Idle) return {};
  return std::visit([this](const auto& e) { return on(e); }, event);
}

Actions Registration::on(const Connected&) {
  if (phase_ != Phase::Connecting) return {};
  phase_ = Phase::Subscribing;
  return {CancelTimer{TimerId::Response}, Subscribe{std::string(kResponseFilter), 1},
          StartTimer{TimerId::Response, request_.response_timeout}};
}

Actions Registration::on(const SubscribeAcked& ack) {
  if (phase_ != Phase::Subscribing) return {};
  if (ack.granted_qos == kSubackFailure || ack.granted_qos < 0 || ack.granted_qos > 2) {
    return finish_transient("DPS refused the subscription to " + std::string(kResponseFilter));
  }
  Actions actions{CancelTimer{TimerId::Response}};
  if (!operation_id_.empty()) {
    // Resuming: the poll goes out through the poll timer, so the caller's pacing of polls (DPS
    // allows 5 per 10 s per device) applies to this one too.
    phase_ = Phase::WaitingToPoll;
    actions.emplace_back(Log{LogLevel::Info, "resuming DPS operation " + operation_id_});
    actions.emplace_back(StartTimer{TimerId::Poll, milliseconds(0)});
    return actions;
  }
  Actions request = send_request();
  actions.insert(actions.end(), request.begin(), request.end());
  return actions;
}

Actions Registration::on(const ConnectRefused& refused) {
  Outcome outcome;
  // 4 and 5 are DPS saying the credentials are wrong: retrying soon will not help.
  outcome.kind = (refused.connack_rc == 4 || refused.connack_rc == 5) ? OutcomeKind::Refused
                                                                      : OutcomeKind::Transient;
  outcome.error = "MQTT CONNECT refused: " + connack_reason(refused.connack_rc) + " (rc " +
                  std::to_string(refused.connack_rc) + ")";
  if (outcome.kind == OutcomeKind::Transient) outcome.operation_id = operation_id_;
  return finish(std::move(outcome));
}

Actions Registration::on_stray(std::string why) {
  if (++stray_messages_ > kMaxStrayMessages) {
    return finish_transient("DPS sent " + std::to_string(stray_messages_) +
                            " messages that answer no request; closing the connection");
  }
  // Debug, with a length rather than the content: a hostile peer must not be able to turn
  // replies into log volume.
  return {Log{LogLevel::Debug, std::move(why)}};
}

Actions Registration::on(const MessageReceived& message) {
  const auto topic = parse_response_topic(message.topic);
  if (!topic) {
    return on_stray("ignoring a message on an unrelated topic (" +
                    std::to_string(message.topic.size()) + " bytes)");
  }
  if (phase_ != Phase::AwaitingReply || topic->rid != pending_rid_ || !validate_rid(topic->rid)) {
    return on_stray("ignoring a DPS reply that answers no pending request ($rid of " +
                    std::to_string(topic->rid.size()) + " bytes, status " +
                    std::to_string(topic->status) + ")");
  }
  std::optional<milliseconds> retry_after;
  if (topic->retry_after_s) retry_after = seconds(*topic->retry_after_s);

  Actions actions{CancelTimer{TimerId::Response}};
  Actions next;
  if (topic->status == 200 || topic->status == 202) {
    next = on_operation_status(topic->status, message.payload, retry_after);
  } else if (is_transient_status(topic->status)) {
    next = on_throttled(topic->status, message.payload, retry_after);
  } else if (awaiting_poll_reply_ && topic->status >= 400 && topic->status < 500 &&
             !registered_afresh_) {
    // A 4xx on a poll says DPS does not know (or no longer serves) that operation: the
    // registration itself may be fine, so register afresh, once, on this connection.
    registered_afresh_ = true;
    next.emplace_back(Log{LogLevel::Notice, "DPS does not know operation " + operation_id_ + " (" +
                                                status_name(topic->status) +
                                                "); registering afresh"});
    operation_id_.clear();
    polls_ = 0;
    Actions request = send_request();
    next.insert(next.end(), request.begin(), request.end());
  } else {
    next = on_refused(topic->status, message.payload);
  }
  actions.insert(actions.end(), next.begin(), next.end());
  return actions;
}

Actions Registration::on_operation_status(int status, std::string_view body,
                                          std::optional<milliseconds> retry_after) {
  auto parsed = parse_operation_status(body);
  if (!parsed) {
    return finish_transient("DPS reply malformed (" + std::to_string(status) +
                            "): " + parsed.error());
  }
  OperationStatus& op = parsed.value();
  switch (op.state) {
    case OperationState::Assigned: {
      Outcome outcome;
      outcome.kind = OutcomeKind::Assigned;
      outcome.operation_id = op.operation_id;
      outcome.registration_state = std::move(op.registration_state);
      return finish(std::move(outcome));
    }
    case OperationState::Failed:
    case OperationState::Disabled: {
      Outcome outcome;
      outcome.kind = OutcomeKind::Refused;
      std::string detail;
      if (op.registration_state) {
        outcome.dps_error_code = op.registration_state->error_code;
        if (op.registration_state->error_code) {
          detail = "errorCode " + std::to_string(*op.registration_state->error_code);
        }
        if (!op.registration_state->error_message.empty()) {
          detail += (detail.empty() ? "" : ": ") + op.registration_state->error_message;
        }
      }
      outcome.error = op.state == OperationState::Disabled ? "DPS: the enrollment is disabled"
                                                           : "DPS: registration failed";
      if (!detail.empty()) outcome.error += " (" + detail + ")";
      outcome.registration_state = std::move(op.registration_state);
      return finish(std::move(outcome));
    }
    case OperationState::Assigning:
    case OperationState::Unassigned: {
      // Keep polling. unassigned is what the service reports before it has started; the C#
      // and embedded SDKs poll on, and so do we. A poll answer without an operationId still
      // belongs to the operation we polled.
      if (op.operation_id.empty()) op.operation_id = operation_id_;
      if (op.operation_id.empty()) {
        return finish_transient("DPS reply malformed: operationId is missing while status is " +
                                op.status_text);
      }
      operation_id_ = op.operation_id;
      if (polls_ >= kMaxPolls) {
        return finish_transient("DPS still assigning after " + std::to_string(kMaxPolls) +
                                " polls");
      }
      const milliseconds delay = poll_interval(retry_after);
      phase_ = Phase::WaitingToPoll;
      return {Log{LogLevel::Info, "DPS is " + op.status_text + " (operation " + operation_id_ +
                                      "); polling in " + seconds_text(delay)},
              StartTimer{TimerId::Poll, delay}};
    }
    case OperationState::Unknown:
      break;
  }
  return finish_transient("DPS reply has an unknown status '" + op.status_text + "'");
}

Actions Registration::on_throttled(int status, std::string_view body,
                                   std::optional<milliseconds> retry_after) {
  const ServiceError error = parse_service_error(body);
  const std::string detail = describe_service_error(error);
  const std::optional<milliseconds> delay = retry_delay(retry_after, request_.retry_max);
  std::string text;
  if (is_conflict(status)) {
    text = "DPS: registration conflict (" +
           (error.error_code ? std::to_string(*error.error_code) : std::to_string(status)) + ")";
  } else {
    text = "DPS answered " + status_name(status);
    if (!detail.empty()) text += " (" + detail + ")";
  }

  if (delay && in_connection_retries_ < kMaxInConnectionRetries &&
      *delay <= kMaxInConnectionRetryDelay) {
    ++in_connection_retries_;
    phase_ = Phase::WaitingToRetry;
    return {Log{LogLevel::Warning, text + "; retrying in " + seconds_text(*delay)}, Retrying{text},
            StartTimer{TimerId::Retry, *delay}};
  }
  Outcome outcome;
  outcome.error = text;
  outcome.dps_error_code = error.error_code;
  outcome.retry_after = delay;
  outcome.operation_id = operation_id_;
  return finish(std::move(outcome));
}

Actions Registration::on_refused(int status, std::string_view body) {
  const ServiceError error = parse_service_error(body);
  const std::string detail = describe_service_error(error);
  Outcome outcome;
  // 4xx is DPS judging the request (credentials, enrollment, body): the same request will get
  // the same answer until someone changes something. Other codes (3xx, 1xx) are not in the
  // protocol at all; treat them as a transient oddity rather than a verdict.
  outcome.kind = (status >= 400 && status < 500) ? OutcomeKind::Refused : OutcomeKind::Transient;
  outcome.error = "DPS refused the registration: " + status_name(status);
  if (!detail.empty()) outcome.error += " (" + detail + ")";
  outcome.dps_error_code = error.error_code;
  if (outcome.kind == OutcomeKind::Transient) outcome.operation_id = operation_id_;
  return finish(std::move(outcome));
}

Actions Registration::on(const TimerFired& timer) {
  switch (timer.id) {
    case TimerId::Response: {
      if (phase_ == Phase::Connecting) {
        return finish_transient("no MQTT CONNACK from DPS within " +
                                seconds_text(request_.connect_timeout));
      }
      if (phase_ == Phase::Subscribing) {
        return finish_transient("no SUBACK from DPS within " +
                                seconds_text(request_.response_timeout));
      }
      if (phase_ != Phase::AwaitingReply) return {};
      return finish_transient("no reply from DPS within " +
                              seconds_text(request_.response_timeout));
    }
    case TimerId::Poll:
      if (phase_ != Phase::WaitingToPoll) return {};
      ++polls_;
      return send_request();
    case TimerId::Retry:
      if (phase_ != Phase::WaitingToRetry) return {};
      return send_request();
    case TimerId::Attempt:
      return finish_transient("no assignment within " + seconds_text(request_.attempt_limit) +
                              " (the limit of one attempt)");
  }
  return {};
}

Actions Registration::on(const ConnectionLost& lost) {
  return finish_transient(lost.reason.empty() ? "connection to DPS lost" : lost.reason);
}

Actions Registration::send_request() {
  pending_rid_ = std::to_string(next_rid_++);
  phase_ = Phase::AwaitingReply;
  Publish publish;
  awaiting_poll_reply_ = !operation_id_.empty();
  if (!awaiting_poll_reply_) {
    publish.topic = register_topic(pending_rid_);
    publish.payload = register_body(request_.registration_id, request_.payload_json);
  } else {
    publish.topic = poll_topic(pending_rid_, operation_id_);
    publish.poll = true;
    // DPS ignores the poll body; an empty one is the least to send (C#, embedded SDK).
  }
  return {std::move(publish), StartTimer{TimerId::Response, request_.response_timeout}};
}

Actions Registration::finish_transient(std::string error) {
  Outcome outcome;
  outcome.error = std::move(error);
  outcome.operation_id = operation_id_;
  return finish(std::move(outcome));
}

Actions Registration::finish(Outcome outcome) {
  phase_ = Phase::Finished;
  return {CancelTimer{TimerId::Response}, CancelTimer{TimerId::Poll}, CancelTimer{TimerId::Retry},
          CancelTimer{TimerId::Attempt},  CloseConnection{},          Finished{std::move(outcome)}};
}

}  // namespace dpsd::core
