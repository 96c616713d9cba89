#include "app/attempt.hpp"

#include <openssl/crypto.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>

#include "dpsd/version.hpp"
#include "io/log.hpp"

namespace dpsd::app {

namespace {

// After DISCONNECT we give the relay this long to carry it out and see the server close, so
// the server logs a clean goodbye; the outcome is known already, so this is only politeness.
constexpr std::chrono::milliseconds kCloseGrace{1000};

std::chrono::milliseconds monotonic_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now().time_since_epoch());
}

core::RegistrationRequest make_request(const core::Config& config, const AttemptPlan& plan) {
  core::RegistrationRequest request;
  request.id_scope = config.id_scope;
  request.registration_id = config.registration_id;
  request.payload_json = config.payload_json;
  request.client_version = kVersion;
  request.connect_timeout =
      config.connect_timeout + config.tls_handshake_timeout + config.response_timeout;
  request.response_timeout = config.response_timeout;
  request.retry_max = config.retry_max;
  request.attempt_limit = plan.attempt_limit;
  request.resume_operation_id = plan.resume_operation_id;
  return request;
}

}  // namespace

Attempt::Attempt(sd_event* event, SSL_CTX* tls, const core::Config& config, core::Signer signer,
                 core::PollPacer& pacer, const AttemptPlan& plan, Setback setback, Done done)
    : event_(event),
      tls_(tls),
      config_(config),
      signer_(std::move(signer)),
      pacer_(pacer),
      setback_(std::move(setback)),
      done_(std::move(done)),
      registration_(make_request(config, plan)),
      preferred_(plan.preferred),
      response_timer_(event, [this] { feed(core::TimerFired{core::TimerId::Response}); }),
      poll_timer_(event, [this] { feed(core::TimerFired{core::TimerId::Poll}); }),
      retry_timer_(event, [this] { feed(core::TimerFired{core::TimerId::Retry}); }),
      attempt_timer_(event, [this] { feed(core::TimerFired{core::TimerId::Attempt}); }),
      close_grace_timer_(event,
                         [this] {
                           channel_.reset();
                           complete_when_closed();
                         }),
      completion_(event, [this] {
        core::Outcome outcome = std::move(*outcome_);
        outcome_.reset();
        Done done = done_;
        done(std::move(outcome));  // may destroy *this: nothing after this line
      }) {}

Attempt::~Attempt() = default;

void Attempt::start() {
  execute(registration_.start());
}

void Attempt::feed(const core::Event& event) {
  execute(registration_.handle(event));
}

io::Timer& Attempt::timer(core::TimerId id) {
  switch (id) {
    case core::TimerId::Poll:
      return poll_timer_;
    case core::TimerId::Retry:
      return retry_timer_;
    case core::TimerId::Attempt:
      return attempt_timer_;
    case core::TimerId::Response:
      break;
  }
  return response_timer_;
}

void Attempt::execute(core::Actions actions) {
  for (auto& action : actions) {
    if (auto* open = std::get_if<core::OpenConnection>(&action)) {
      client_id_ = open->client_id;
      username_ = open->username;
      io::ChannelOptions options;
      options.host = config_.endpoint_host;
      options.port = config_.port();
      options.transport = config_.transport;
      options.ws_port = config_.websocket_port;
      if (config_.transport == core::Transport::Auto && preferred_ == core::Transport::MqttWs) {
        // What worked last time (state file): skip the 8883 try a blocked network would eat.
        options.transport = core::Transport::MqttWs;
        options.port = config_.websocket_port;
      }
      options.connect_timeout = config_.connect_timeout;
      options.handshake_timeout = config_.tls_handshake_timeout;
      options.socket_dir = config_.runtime_dir / "private";
      if (config_.proxy) {
        options.proxy = config_.proxy;
      } else if (!config_.proxy_configured) {
        auto from_env = core::proxy::proxy_from_environment(
            [](const char* name) { return std::getenv(name); }, options.host, options.port);
        if (!from_env) {
          feed(core::ConnectionLost{"proxy: " + from_env.error()});
          return;
        }
        options.proxy = std::move(from_env.value());
      }
      io::log_info("connecting to " + options.host + ":" + std::to_string(options.port) + " (" +
                   core::transport_name(options.transport) + ")" +
                   (options.proxy ? " through proxy " + options.proxy->display() : ""));
      channel_ = std::make_unique<io::SecureChannel>(
          event_, tls_, options, [this](const std::string& path) { on_channel_ready(path); },
          [this](const std::string& reason) { on_channel_closed(reason); });
      channel_->start();
    } else if (auto* subscribe = std::get_if<core::Subscribe>(&action)) {
      if (auto status = mqtt_->subscribe(subscribe->topic, subscribe->qos); !status) {
        feed(core::ConnectionLost{status.error()});
        return;
      }
    } else if (auto* publish = std::get_if<core::Publish>(&action)) {
      io::log_debug("publish " + publish->topic);
      if (publish->poll) pacer_.record(monotonic_now());
      if (auto status = mqtt_->publish(publish->topic, publish->payload, publish->qos); !status) {
        feed(core::ConnectionLost{status.error()});
        return;
      }
    } else if (auto* start = std::get_if<core::StartTimer>(&action)) {
      auto delay = start->delay;
      if (start->id == core::TimerId::Poll) {
        delay = pacer_.delay(monotonic_now(), delay);
        if (delay > start->delay) {
          io::log_info("pacing polls (DPS allows 5 per 10 s): next poll in " +
                       std::to_string(delay.count()) + " ms");
        }
      }
      timer(start->id).arm(delay);
    } else if (auto* cancel = std::get_if<core::CancelTimer>(&action)) {
      timer(cancel->id).cancel();
    } else if (std::get_if<core::CloseConnection>(&action) != nullptr) {
      close_connection();
    } else if (auto* log = std::get_if<core::Log>(&action)) {
      io::log(log->level, log->message);
    } else if (auto* retrying = std::get_if<core::Retrying>(&action)) {
      if (setback_) setback_(retrying->reason);
    } else if (auto* finished = std::get_if<core::Finished>(&action)) {
      outcome_ = std::move(finished->outcome);
      complete_when_closed();
    }
  }
}

void Attempt::on_channel_ready(const std::string& socket_path) {
  // The server's certificate is verified by now: only from here on do credentials exist.
  used_transport_ = channel_->transport_used();
  std::string password;
  if (signer_) {
    const std::int64_t expiry =
        static_cast<std::int64_t>(std::time(nullptr)) + config_.sas_token_lifetime.count();
    auto token = core::make_sas_token(signer_, config_.id_scope, config_.registration_id, expiry);
    if (!token) {
      feed(core::ConnectionLost{"SAS token: " + token.error()});
      return;
    }
    password = std::move(token.value());
  }
  // X.509 (no signer): the TLS client certificate is the credential, and there is no password.
  io::log_debug("TLS up to " + channel_->peer() + "; MQTT CONNECT as " + client_id_);
  mqtt_ = std::make_unique<io::MqttSession>(
      event_, client_id_,
      io::MqttSession::Handlers{
          [this](int rc) {
            if (rc == 0) {
              feed(core::Connected{});
            } else {
              feed(core::ConnectRefused{rc});
            }
          },
          [this](int granted_qos) { feed(core::SubscribeAcked{granted_qos}); },
          [this](std::string topic, std::string payload) {
            feed(core::MessageReceived{std::move(topic), std::move(payload)});
          },
          [this](std::string reason) {
            feed(core::ConnectionLost{channel_close_reason_.empty() ? std::move(reason)
                                                                    : channel_close_reason_});
          }});
  auto status = mqtt_->connect(socket_path, username_, password);
  OPENSSL_cleanse(password.data(), password.size());
  if (!status) feed(core::ConnectionLost{status.error()});
}

void Attempt::on_channel_closed(const std::string& reason) {
  if (registration_.finished()) {
    // We asked for the close; the relay has carried our DISCONNECT out.
    channel_.reset();
    complete_when_closed();
    return;
  }
  if (mqtt_) {
    // The relay hands libmosquitto every byte the server sent before closing (a CONNACK 5, a
    // last reply) and then closes its end: let libmosquitto read them first and report the
    // loss itself, with the channel's reason.
    channel_close_reason_ = reason;
    return;
  }
  feed(core::ConnectionLost{reason});
}

void Attempt::close_connection() {
  if (mqtt_) {
    mqtt_->disconnect();
    // Closing libmosquitto's end makes the relay finish and close the TLS side.
    mqtt_.reset();
  }
  // A channel that already closed will not report again: nothing to wait for.
  if (channel_ && !channel_close_reason_.empty()) channel_.reset();
  if (channel_) close_grace_timer_.arm(kCloseGrace);
}

void Attempt::complete_when_closed() {
  if (!outcome_ || channel_ || completion_.pending()) return;
  close_grace_timer_.cancel();
  completion_.post();
}

}  // namespace dpsd::app
