#pragma once
// libmosquitto as a thin MQTT 3.1.1 session on our sd-event loop. It never sees the network:
// it connects to the secure channel's Unix socket (libmosquitto treats port 0 as a socket path),
// so DNS, TCP and TLS stay in io/secure_channel. Callbacks are queued while libmosquitto runs
// and delivered from the loop afterwards, one per io::Deferred dispatch, so a handler may
// destroy the session.
#include <mosquitto.h>
#include <systemd/sd-event.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <variant>

#include "core/expected.hpp"
#include "io/event_loop.hpp"

namespace dpsd::io {

class MqttSession {
 public:
  struct Handlers {
    std::function<void(int connack_rc)> on_connack;
    std::function<void(int granted_qos)> on_suback;  // 0x80: the broker refused the filter
    std::function<void(std::string topic, std::string payload)> on_message;
    std::function<void(std::string reason)> on_lost;  // any failure or close after connect
  };

  MqttSession(sd_event* event, const std::string& client_id, Handlers handlers);
  ~MqttSession();
  MqttSession(const MqttSession&) = delete;
  MqttSession& operator=(const MqttSession&) = delete;

  // The password lives only inside libmosquitto's connect packet; the caller wipes its copy.
  Status connect(const std::string& unix_socket_path, const std::string& username,
                 const std::string& password);
  Status subscribe(const std::string& topic, int qos);
  Status publish(const std::string& topic, const std::string& payload, int qos);
  void disconnect();  // sends DISCONNECT (best effort) and stops watching the socket

 private:
  struct Connack {
    int rc;
  };
  struct Suback {
    int granted_qos;
  };
  struct Message {
    std::string topic;
    std::string payload;
  };
  struct Lost {
    std::string reason;
  };
  using Pending = std::variant<Connack, Suback, Message, Lost>;

  static int on_io(sd_event_source* source, int fd, uint32_t revents, void* userdata);
  static int on_misc(sd_event_source* source, uint64_t usec, void* userdata);
  void after_mosquitto_call(int rc, const char* what);
  void update_io_events();
  void queue(Pending event);
  void deliver_one();

  sd_event* event_;
  Handlers handlers_;
  struct MosqDeleter {
    void operator()(mosquitto* m) const { mosquitto_destroy(m); }
  };
  std::unique_ptr<mosquitto, MosqDeleter> mosq_;
  EventSourcePtr io_source_;
  EventSourcePtr misc_timer_;
  std::deque<Pending> pending_;
  Deferred delivery_;  // runs deliver_one() from the loop while pending_ holds events
  bool lost_reported_ = false;
};

}  // namespace dpsd::io
