#include "core/provisioner.hpp"

#include <algorithm>
#include <utility>

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
  switch (status) {
    case 400:
      return "400 Bad Request";
    case 401:
      return "401 Unauthorized";
    case 403:
      return "403 Forbidden";
    case 404:
      return "404 Not Found";
    case 409:
      return "409 Conflict";
    case 412:
      return "412 Precondition Failed";
    case 429:
      return "429 Too Many Requests";
    case 500:
      return "500 Internal Server Error";
    case 503:
      return "503 Service Unavailable";
    default:
      return std::to_string(status);
  }
}

// "errorCode 401002: Invalid certificate." or "" when DPS said nothing useful.
std::string describe_service_error(const ServiceError& error) {
  std::string text;
  if (error.error_code) text = "errorCode " + std::to_string(*error.error_code);
  if (!error.message.empty()) text += (text.empty() ? "" : ": ") + error.message;
  return text;
}

std::string connack_reason(int rc) {
  switch (rc) {
    case 1:
      return "unacceptable protocol version";
    case 2:
      return "identifier rejected";
    case 3:
      return "server unavailable";
    case 4:
      return "bad user name or password";
    case 5:
      return "not authorized";
    default:
      return "reason " + std::to_string(rc);
  }
}

}  // namespace

milliseconds poll_interval(std::optional<milliseconds> retry_after) {
  if (!retry_after) return kDefaultPollInterval;
  return std::clamp(*retry_after, kMinPollInterval, kMaxPollInterval);
}

Registration::Registration(RegistrationRequest request) : request_(std::move(request)) {}

Actions Registration::start() {
  phase_ = Phase::Connecting;
  return {OpenConnection{
              request_.registration_id,
              mqtt_username(request_.id_scope, request_.registration_id, request_.client_version)},
          StartTimer{TimerId::Response, request_.connect_timeout}};
}

Actions Registration::handle(const Event& event) {
  if (phase_ == Phase::Finished || phase_ == Phase::Idle) return {};
  return std::visit([this](const auto& e) { return on(e); }, event);
}

Actions Registration::on(const Connected&) {
  if (phase_ != Phase::Connecting) return {};
  Actions actions{CancelTimer{TimerId::Response}, Subscribe{std::string(kResponseFilter), 1}};
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
  return finish(std::move(outcome));
}

Actions Registration::on(const MessageReceived& message) {
  const auto topic = parse_response_topic(message.topic);
  if (!topic) {
    return {Log{LogLevel::Debug, "ignoring message on unrelated topic " + message.topic}};
  }
  if (phase_ != Phase::AwaitingReply || topic->rid != pending_rid_) {
    return {Log{LogLevel::Info, "ignoring DPS reply with $rid '" + topic->rid + "' (waiting for '" +
                                    pending_rid_ + "')"}};
  }
  std::optional<milliseconds> retry_after;
  if (topic->retry_after_s) retry_after = seconds(*topic->retry_after_s);

  Actions actions{CancelTimer{TimerId::Response}};
  Actions next;
  if (topic->status == 200 || topic->status == 202) {
    next = on_operation_status(topic->status, message.payload, retry_after);
  } else if (topic->status == 429 || topic->status >= 500) {
    next = on_throttled(topic->status, message.payload, retry_after);
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
    Outcome outcome;
    outcome.error = "DPS reply malformed (" + std::to_string(status) + "): " + parsed.error();
    return finish(std::move(outcome));
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
      outcome.operation_id = op.operation_id;
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
      // and embedded SDKs poll on, and so do we.
      if (op.operation_id.empty()) {
        Outcome outcome;
        outcome.error =
            "DPS reply malformed: operationId is missing while status is " + op.status_text;
        return finish(std::move(outcome));
      }
      if (polls_ >= kMaxPolls) {
        Outcome outcome;
        outcome.operation_id = op.operation_id;
        outcome.error = "DPS still assigning after " + std::to_string(kMaxPolls) + " polls";
        return finish(std::move(outcome));
      }
      operation_id_ = op.operation_id;
      const milliseconds delay = poll_interval(retry_after);
      phase_ = Phase::WaitingToPoll;
      return {Log{LogLevel::Info, "DPS is " + op.status_text + " (operation " + operation_id_ +
                                      "); polling in " + seconds_text(delay)},
              StartTimer{TimerId::Poll, delay}};
    }
    case OperationState::Unknown:
      break;
  }
  Outcome outcome;
  outcome.operation_id = op.operation_id;
  outcome.error = "DPS reply has an unknown status '" + op.status_text + "'";
  return finish(std::move(outcome));
}

Actions Registration::on_throttled(int status, std::string_view body,
                                   std::optional<milliseconds> retry_after) {
  const ServiceError error = parse_service_error(body);
  const std::string detail = describe_service_error(error);
  const milliseconds delay = poll_interval(retry_after);
  std::string text = "DPS answered " + status_name(status);
  if (!detail.empty()) text += " (" + detail + ")";

  if (in_connection_retries_ < kMaxInConnectionRetries && delay <= kMaxInConnectionRetryDelay) {
    ++in_connection_retries_;
    phase_ = Phase::WaitingToRetry;
    return {Log{LogLevel::Warning, text + "; retrying in " + seconds_text(delay)},
            StartTimer{TimerId::Retry, delay}};
  }
  Outcome outcome;
  outcome.error = text;
  outcome.dps_error_code = error.error_code;
  outcome.retry_after = retry_after;
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
  outcome.operation_id = operation_id_;
  return finish(std::move(outcome));
}

Actions Registration::on(const TimerFired& timer) {
  switch (timer.id) {
    case TimerId::Response: {
      if (phase_ == Phase::Connecting) {
        Outcome outcome;
        outcome.error = "no MQTT CONNACK from DPS within " + seconds_text(request_.connect_timeout);
        return finish(std::move(outcome));
      }
      if (phase_ != Phase::AwaitingReply) return {};
      Outcome outcome;
      outcome.operation_id = operation_id_;
      outcome.error = "no reply from DPS within " + seconds_text(request_.response_timeout);
      return finish(std::move(outcome));
    }
    case TimerId::Poll:
      if (phase_ != Phase::WaitingToPoll) return {};
      ++polls_;
      return send_request();
    case TimerId::Retry:
      if (phase_ != Phase::WaitingToRetry) return {};
      return send_request();
  }
  return {};
}

Actions Registration::on(const ConnectionLost& lost) {
  Outcome outcome;
  outcome.operation_id = operation_id_;
  outcome.error = lost.reason.empty() ? "connection to DPS lost" : lost.reason;
  return finish(std::move(outcome));
}

Actions Registration::send_request() {
  pending_rid_ = std::to_string(next_rid_++);
  phase_ = Phase::AwaitingReply;
  Publish publish;
  if (operation_id_.empty()) {
    publish.topic = register_topic(pending_rid_);
    publish.payload = register_body(request_.registration_id, request_.payload_json);
  } else {
    publish.topic = poll_topic(pending_rid_, operation_id_);
    // DPS ignores the poll body; an empty one is the least to send (C#, embedded SDK).
  }
  return {std::move(publish), StartTimer{TimerId::Response, request_.response_timeout}};
}

Actions Registration::finish(Outcome outcome) {
  phase_ = Phase::Finished;
  return {CancelTimer{TimerId::Response}, CancelTimer{TimerId::Poll}, CancelTimer{TimerId::Retry},
          CloseConnection{}, Finished{std::move(outcome)}};
}

}  // namespace dpsd::core
