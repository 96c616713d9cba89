#pragma once
// A small synchronous MQTT 3.1.1 test client over libmosquitto (TLS only), for scripting a DPS
// conversation step by step against the emulator: connect, subscribe, publish, wait for the next
// message. Unlike the CLI tools it keeps one connection across several requests, which DPS
// answers per client id. It never reconnects on its own, so a kick stays visible.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

struct mosquitto;
struct mosquitto_message;

namespace dpsd::test {

struct MqttMessage {
  std::string topic;
  std::string payload;
  int qos = 0;
};

struct MqttClientOptions {
  std::string host = "localhost";  // also the name the server certificate is checked against
  std::uint16_t port = 0;
  std::string client_id;
  std::string username;
  std::optional<std::string> password;
  std::filesystem::path cafile;
  std::filesystem::path certfile;  // client certificate (X.509 attestation), optional
  std::filesystem::path keyfile;
  int keepalive_s = 60;
  bool clean_session = true;
};

class MqttTestClient {
 public:
  explicit MqttTestClient(MqttClientOptions opts);
  ~MqttTestClient();
  MqttTestClient(const MqttTestClient&) = delete;
  MqttTestClient& operator=(const MqttTestClient&) = delete;

  // CONNACK return code (0 accepted, 5 not authorized, …); -1 when no CONNACK arrived in time
  // (TLS or TCP failure, or the server closed the connection). Text of the failure in error().
  int connect(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Granted QoS from the SUBACK (128 = refused); nullopt on timeout or lost connection.
  std::optional<int> subscribe(const std::string& filter, int qos = 1,
                               std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Queues a PUBLISH; true if libmosquitto accepted it.
  bool publish(const std::string& topic, const std::string& payload, int qos = 1);
  // The next message not yet taken, waiting up to `timeout`.
  std::optional<MqttMessage> next_message(std::chrono::milliseconds timeout);
  bool connected() const;
  // Waits until the connection is gone (server kick, close).
  bool wait_disconnected(std::chrono::milliseconds timeout);
  void disconnect();
  const std::string& error() const { return error_; }

 private:
  static void on_connect(mosquitto*, void* self, int rc);
  static void on_disconnect(mosquitto*, void* self, int rc);
  static void on_subscribe(mosquitto*, void* self, int mid, int count, const int* granted);
  static void on_message(mosquitto*, void* self, const mosquitto_message* msg);
  void run_loop();

  MqttClientOptions opts_;
  mosquitto* mosq_ = nullptr;
  std::thread loop_;
  bool stop_ = false;  // guarded by mutex_

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::optional<int> connack_;
  bool connected_ = false;
  bool loop_done_ = false;
  std::deque<MqttMessage> messages_;
  std::optional<int> sub_mid_;
  std::optional<int> granted_;
  std::string error_;
};

}  // namespace dpsd::test
