#pragma once
// One registration attempt carried out: the pure core::Registration's actions executed against
// the secure channel, libmosquitto and sd-event timers, and their results fed back as events.
// The outcome is delivered through an io::Deferred once the connection is closed, so the owner
// may destroy the Attempt in its callback.
#include <openssl/ssl.h>
#include <systemd/sd-event.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/config.hpp"
#include "core/poll_pacer.hpp"
#include "core/provisioner.hpp"
#include "core/sas_token.hpp"
#include "core/supervisor.hpp"
#include "io/event_loop.hpp"
#include "io/mqtt_session.hpp"
#include "io/secure_channel.hpp"

namespace dpsd::app {

// What the supervisor decides for one attempt beyond the config.
using AttemptPlan = core::AttemptPlan;

class Attempt {
 public:
  using Done = std::function<void(core::Outcome)>;
  // A setback the attempt rides out (it keeps going): the reason, for the status.
  using Setback = std::function<void(const std::string&)>;

  // `pacer` outlives the attempt (the daemon owns it): DPS's poll limit is per device, not per
  // connection.
  Attempt(sd_event* event, SSL_CTX* tls, const core::Config& config, core::Signer signer,
          core::PollPacer& pacer, const AttemptPlan& plan, Setback setback, Done done);
  ~Attempt();
  Attempt(const Attempt&) = delete;
  Attempt& operator=(const Attempt&) = delete;

  void start();
  // The transport of the last channel that came up (Mqtt until one did).
  core::Transport transport_used() const { return used_transport_; }

 private:
  void execute(core::Actions actions);
  void feed(const core::Event& event);
  void on_channel_ready(const std::string& socket_path);
  void on_channel_closed(const std::string& reason);
  void close_connection();
  void complete_when_closed();
  io::Timer& timer(core::TimerId id);

  sd_event* event_;
  SSL_CTX* tls_;
  const core::Config& config_;
  core::Signer signer_;
  core::PollPacer& pacer_;
  Setback setback_;
  Done done_;
  core::Registration registration_;
  std::string client_id_;
  std::string username_;
  core::Transport preferred_;  // transport = "auto": start with the one that worked last time
  core::Transport used_transport_ = core::Transport::Mqtt;
  std::string channel_close_reason_;  // set when the server closed while libmosquitto drains
  std::unique_ptr<io::SecureChannel> channel_;
  std::unique_ptr<io::MqttSession> mqtt_;
  io::Timer response_timer_;
  io::Timer poll_timer_;
  io::Timer retry_timer_;
  io::Timer attempt_timer_;
  io::Timer close_grace_timer_;
  std::optional<core::Outcome> outcome_;
  io::Deferred completion_;  // delivers outcome_ to done_ from the loop
};

}  // namespace dpsd::app
