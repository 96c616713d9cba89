#include "io/mqtt_session.hpp"

#include <sys/epoll.h>

#include <mutex>
#include <system_error>

#include "core/errno_text.hpp"

namespace dpsd::io {

namespace {

void init_library_once() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

// libmosquitto wants loop_misc() about once a second for keep-alive and retries; the session
// only lives for the seconds a registration takes, so this costs nothing when idle.
constexpr std::uint64_t kMiscIntervalUsec = 1'000'000;

}  // namespace

MqttSession::MqttSession(sd_event* event, const std::string& client_id, Handlers handlers)
    : event_(event), handlers_(std::move(handlers)), delivery_(event, [this] { deliver_one(); }) {
  init_library_once();
  mosq_.reset(mosquitto_new(client_id.c_str(), /*clean_session=*/true, this));
  if (!mosq_) throw std::system_error(errno, std::generic_category(), "mosquitto_new");
  mosquitto_int_option(mosq_.get(), MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  mosquitto_connect_callback_set(mosq_.get(), [](mosquitto*, void* obj, int rc) {
    static_cast<MqttSession*>(obj)->queue(Connack{rc});
  });
  mosquitto_subscribe_callback_set(
      mosq_.get(), [](mosquitto*, void* obj, int /*mid*/, int qos_count, const int* granted_qos) {
        // We subscribe to one filter at a time; a SUBACK without a code counts as refused.
        const int qos = qos_count > 0 && granted_qos != nullptr ? granted_qos[0] : 0x80;
        static_cast<MqttSession*>(obj)->queue(Suback{qos});
      });
  mosquitto_message_callback_set(mosq_.get(),
                                 [](mosquitto*, void* obj, const mosquitto_message* msg) {
                                   std::string payload(static_cast<const char*>(msg->payload),
                                                       static_cast<std::size_t>(msg->payloadlen));
                                   static_cast<MqttSession*>(obj)->queue(
                                       Message{msg->topic ? msg->topic : "", std::move(payload)});
                                 });
  mosquitto_disconnect_callback_set(mosq_.get(), [](mosquitto*, void* obj, int rc) {
    static_cast<MqttSession*>(obj)->queue(
        Lost{rc == 0 ? "MQTT session closed" : std::string("MQTT: ") + mosquitto_strerror(rc)});
  });
}

MqttSession::~MqttSession() {
  io_source_.reset();
  misc_timer_.reset();
}

Status MqttSession::connect(const std::string& unix_socket_path, const std::string& username,
                            const std::string& password) {
  // No password at all (not an empty one) for X.509: the certificate is the credential.
  int rc = mosquitto_username_pw_set(mosq_.get(), username.c_str(),
                                     password.empty() ? nullptr : password.c_str());
  if (rc != MOSQ_ERR_SUCCESS) return Error{std::string("MQTT: ") + mosquitto_strerror(rc)};
  // Keep-alive 60 s: the session lasts seconds, but a silent broker must still be noticed.
  rc = mosquitto_connect_async(mosq_.get(), unix_socket_path.c_str(), 0, 60);
  if (rc != MOSQ_ERR_SUCCESS) {
    return Error{"MQTT: connect to relay " + unix_socket_path + ": " + mosquitto_strerror(rc)};
  }
  const int fd = mosquitto_socket(mosq_.get());
  if (fd < 0) return Error{"MQTT: no socket after connect"};
  sd_event_source* raw = nullptr;
  rc = sd_event_add_io(event_, &raw, fd, EPOLLIN | EPOLLOUT, &MqttSession::on_io, this);
  if (rc < 0) return Error{Errc::Io, "sd_event_add_io: " + core::errno_text(rc)};
  io_source_.reset(raw);
  rc = sd_event_add_time_relative(event_, &raw, CLOCK_MONOTONIC, kMiscIntervalUsec, 100'000,
                                  &MqttSession::on_misc, this);
  if (rc < 0) return Error{Errc::Io, "sd_event_add_time: " + core::errno_text(rc)};
  misc_timer_.reset(raw);
  sd_event_source_set_enabled(misc_timer_.get(), SD_EVENT_ON);
  return ok_status();
}

Status MqttSession::subscribe(const std::string& topic, int qos) {
  const int rc = mosquitto_subscribe(mosq_.get(), nullptr, topic.c_str(), qos);
  if (rc != MOSQ_ERR_SUCCESS)
    return Error{std::string("MQTT subscribe: ") + mosquitto_strerror(rc)};
  update_io_events();
  return ok_status();
}

Status MqttSession::publish(const std::string& topic, const std::string& payload, int qos) {
  const int rc = mosquitto_publish(mosq_.get(), nullptr, topic.c_str(),
                                   static_cast<int>(payload.size()), payload.data(), qos, false);
  if (rc != MOSQ_ERR_SUCCESS) return Error{std::string("MQTT publish: ") + mosquitto_strerror(rc)};
  update_io_events();
  return ok_status();
}

void MqttSession::disconnect() {
  if (!io_source_) return;
  lost_reported_ = true;  // a close we asked for is not a loss
  mosquitto_disconnect(mosq_.get());
  // Flush the DISCONNECT if the socket takes it now; we do not wait for it.
  mosquitto_loop_write(mosq_.get(), 1);
  io_source_.reset();
  misc_timer_.reset();
}

int MqttSession::on_io(sd_event_source* /*source*/, int /*fd*/, uint32_t revents, void* userdata) {
  auto* self = static_cast<MqttSession*>(userdata);
  if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    self->after_mosquitto_call(mosquitto_loop_read(self->mosq_.get(), 1), "read");
  }
  if (self->io_source_ && (revents & EPOLLOUT)) {
    self->after_mosquitto_call(mosquitto_loop_write(self->mosq_.get(), 1), "write");
  }
  self->update_io_events();
  return 0;
}

int MqttSession::on_misc(sd_event_source* source, uint64_t usec, void* userdata) {
  auto* self = static_cast<MqttSession*>(userdata);
  self->after_mosquitto_call(mosquitto_loop_misc(self->mosq_.get()), "keep-alive");
  sd_event_source_set_time(source, usec + kMiscIntervalUsec);
  sd_event_source_set_enabled(source, SD_EVENT_ON);
  self->update_io_events();
  return 0;
}

void MqttSession::after_mosquitto_call(int rc, const char* what) {
  // Any failure is a lost session: libmosquitto 2.0.11 does not always call on_disconnect.
  if (rc == MOSQ_ERR_SUCCESS || lost_reported_) return;
  const std::string reason = rc == MOSQ_ERR_CONN_LOST
                                 ? "connection to DPS lost"
                                 : std::string("MQTT ") + what + ": " + mosquitto_strerror(rc);
  queue(Lost{reason});
  io_source_.reset();
  misc_timer_.reset();
}

void MqttSession::update_io_events() {
  if (!io_source_) return;
  const uint32_t events = EPOLLIN | (mosquitto_want_write(mosq_.get()) ? EPOLLOUT : 0U);
  sd_event_source_set_io_events(io_source_.get(), events);
}

void MqttSession::queue(Pending event) {
  pending_.push_back(std::move(event));
  delivery_.post();
}

void MqttSession::deliver_one() {
  if (pending_.empty()) return;
  Pending event = std::move(pending_.front());
  pending_.pop_front();
  // Posted before the handler runs: a handler that destroys the session takes the Deferred,
  // and with it the rest of the queue, along.
  if (!pending_.empty()) delivery_.post();
  if (auto* connack = std::get_if<Connack>(&event)) {
    if (handlers_.on_connack) handlers_.on_connack(connack->rc);
  } else if (auto* suback = std::get_if<Suback>(&event)) {
    if (handlers_.on_suback) handlers_.on_suback(suback->granted_qos);
  } else if (auto* message = std::get_if<Message>(&event)) {
    if (handlers_.on_message) {
      handlers_.on_message(std::move(message->topic), std::move(message->payload));
    }
  } else if (auto* lost = std::get_if<Lost>(&event)) {
    if (lost_reported_) return;
    lost_reported_ = true;
    if (handlers_.on_lost) handlers_.on_lost(lost->reason);
  }
  // Nothing after a handler: it may have destroyed the session.
}

}  // namespace dpsd::io
