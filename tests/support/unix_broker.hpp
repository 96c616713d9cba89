#pragma once
// A plain mosquitto (no plugin, no TLS) listening on a Unix socket, as io::MqttSession meets the
// secure channel's relay in dpsd: libmosquitto connects to a socket path. For testing the MQTT
// session on its own. Stopped by PID with the object.
#include <filesystem>
#include <memory>
#include <string>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace dpsd::test {

class UnixBroker {
 public:
  // allow_anonymous false: every CONNECT is refused with "not authorised" (no password file).
  // Starts the broker and waits (bounded) until the socket accepts connections; throws
  // std::runtime_error with mosquitto's log otherwise.
  explicit UnixBroker(bool allow_anonymous = true);
  ~UnixBroker();
  UnixBroker(const UnixBroker&) = delete;
  UnixBroker& operator=(const UnixBroker&) = delete;

  std::filesystem::path socket_path() const { return dir_ / "mqtt.sock"; }
  pid_t pid() const { return broker_ ? broker_->pid() : -1; }

  // SIGTERM by PID (mosquitto closes every client connection), bounded, then SIGKILL.
  void stop();
  void start();
  // Broker stderr and mosquitto.log, for failure messages.
  std::string diagnostics() const;

 private:
  TempDir dir_{"dpsd-broker"};
  std::unique_ptr<Process> broker_;
};

}  // namespace dpsd::test
