#include "support/mqtt_client.hpp"

#include <mosquitto.h>

#include <stdexcept>

namespace dpsd::test {
namespace {

void init_library() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

}  // namespace

MqttTestClient::MqttTestClient(MqttClientOptions opts) : opts_(std::move(opts)) {
  init_library();
  mosq_ = mosquitto_new(opts_.client_id.c_str(), opts_.clean_session, this);
  if (mosq_ == nullptr) throw std::runtime_error("mosquitto_new failed");
  mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  // Our loop runs on its own thread; without this, publish/subscribe/disconnect from the test
  // thread write to the TLS connection directly, racing the loop inside OpenSSL.
  mosquitto_threaded_set(mosq_, true);
  mosquitto_connect_callback_set(mosq_, &MqttTestClient::on_connect);
  mosquitto_disconnect_callback_set(mosq_, &MqttTestClient::on_disconnect);
  mosquitto_subscribe_callback_set(mosq_, &MqttTestClient::on_subscribe);
  mosquitto_message_callback_set(mosq_, &MqttTestClient::on_message);
  if (!opts_.username.empty() || opts_.password) {
    mosquitto_username_pw_set(mosq_, opts_.username.c_str(),
                              opts_.password ? opts_.password->c_str() : nullptr);
  }
  int rc = mosquitto_tls_set(mosq_, opts_.cafile.c_str(), nullptr,
                             opts_.certfile.empty() ? nullptr : opts_.certfile.c_str(),
                             opts_.keyfile.empty() ? nullptr : opts_.keyfile.c_str(), nullptr);
  if (rc != MOSQ_ERR_SUCCESS) {
    mosquitto_destroy(mosq_);
    throw std::runtime_error(std::string("mosquitto_tls_set: ") + mosquitto_strerror(rc));
  }
  mosquitto_tls_opts_set(mosq_, 1, "tlsv1.2", nullptr);
}

MqttTestClient::~MqttTestClient() {
  disconnect();
  mosquitto_destroy(mosq_);
}

int MqttTestClient::connect(std::chrono::milliseconds timeout) {
  int rc = mosquitto_connect(mosq_, opts_.host.c_str(), opts_.port, opts_.keepalive_s);
  if (rc != MOSQ_ERR_SUCCESS) {
    error_ = std::string("mosquitto_connect: ") + mosquitto_strerror(rc);
    return -1;
  }
  {
    std::lock_guard lock(mutex_);
    stop_ = false;
    loop_done_ = false;
    connack_.reset();
  }
  loop_ = std::thread([this] { run_loop(); });
  std::unique_lock lock(mutex_);
  if (!cv_.wait_for(lock, timeout, [this] { return connack_.has_value() || loop_done_; })) {
    error_ = "no CONNACK within timeout";
    return -1;
  }
  if (!connack_) {
    error_ = "connection closed before CONNACK";
    return -1;
  }
  return *connack_;
}

// Our own loop instead of mosquitto_loop_start(): that one reconnects by itself, which would
// hide exactly the kicks and refusals the tests look for.
void MqttTestClient::run_loop() {
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stop_) break;
    }
    int rc = mosquitto_loop(mosq_, 50, 1);
    if (rc != MOSQ_ERR_SUCCESS) break;
  }
  std::lock_guard lock(mutex_);
  connected_ = false;
  loop_done_ = true;
  cv_.notify_all();
}

std::optional<int> MqttTestClient::subscribe(const std::string& filter, int qos,
                                             std::chrono::milliseconds timeout) {
  int mid = 0;
  std::unique_lock lock(mutex_);
  granted_.reset();
  sub_mid_.reset();
  lock.unlock();
  if (mosquitto_subscribe(mosq_, &mid, filter.c_str(), qos) != MOSQ_ERR_SUCCESS) return {};
  lock.lock();
  sub_mid_ = mid;
  if (!cv_.wait_for(lock, timeout, [this] { return granted_.has_value() || loop_done_; })) {
    return {};
  }
  return granted_;
}

bool MqttTestClient::publish(const std::string& topic, const std::string& payload, int qos) {
  return mosquitto_publish(mosq_, nullptr, topic.c_str(), static_cast<int>(payload.size()),
                           payload.data(), qos, false) == MOSQ_ERR_SUCCESS;
}

std::optional<MqttMessage> MqttTestClient::next_message(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!cv_.wait_for(lock, timeout, [this] { return !messages_.empty(); })) return {};
  MqttMessage m = std::move(messages_.front());
  messages_.pop_front();
  return m;
}

bool MqttTestClient::connected() const {
  std::lock_guard lock(mutex_);
  return connected_;
}

bool MqttTestClient::wait_disconnected(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [this] { return !connected_ || loop_done_; });
}

void MqttTestClient::disconnect() {
  if (!loop_.joinable()) return;
  mosquitto_disconnect(mosq_);
  {
    std::unique_lock lock(mutex_);
    // Give the DISCONNECT a moment to be written by the loop before stopping it.
    cv_.wait_for(lock, std::chrono::milliseconds(500), [this] { return loop_done_; });
    stop_ = true;
  }
  loop_.join();
}

void MqttTestClient::on_connect(mosquitto*, void* self, int rc) {
  auto* c = static_cast<MqttTestClient*>(self);
  std::lock_guard lock(c->mutex_);
  c->connack_ = rc;
  c->connected_ = rc == 0;
  c->cv_.notify_all();
}

void MqttTestClient::on_disconnect(mosquitto*, void* self, int) {
  auto* c = static_cast<MqttTestClient*>(self);
  std::lock_guard lock(c->mutex_);
  c->connected_ = false;
  c->cv_.notify_all();
}

void MqttTestClient::on_subscribe(mosquitto*, void* self, int, int count, const int* granted) {
  auto* c = static_cast<MqttTestClient*>(self);
  std::lock_guard lock(c->mutex_);
  c->granted_ = count > 0 ? granted[0] : 128;
  c->cv_.notify_all();
}

void MqttTestClient::on_message(mosquitto*, void* self, const mosquitto_message* msg) {
  auto* c = static_cast<MqttTestClient*>(self);
  std::lock_guard lock(c->mutex_);
  c->messages_.push_back(MqttMessage{msg->topic,
                                     std::string(static_cast<const char*>(msg->payload),
                                                 static_cast<std::size_t>(msg->payloadlen)),
                                     msg->qos});
  c->cv_.notify_all();
}

}  // namespace dpsd::test
