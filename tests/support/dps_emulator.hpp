#pragma once
// A DPS stand-in for tests: a real mosquitto 2.0 broker with the dps_emulator plugin
// (tests/emulator/dps_emulator.cpp) on free loopback ports, behind TLS from a TestPki.
// Scenarios live in devices.json, which the plugin re-reads at every CONNECT after a change, so
// set_device()/set_scenario() take effect for the next connection without a restart.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"

namespace dpsd::test {

// The plugin and the dps-emulator-run program this build produced.
std::filesystem::path emulator_plugin_path();
std::filesystem::path emulator_runner_path();

struct EmulatorDevice {
  std::string key;  // base64 symmetric key of an individual enrollment
  nlohmann::json scenario = nlohmann::json::object();  // {"name":"normal",…}; see README in plugin
  // An X.509 individual enrollment: the device connects to x509_port() with a certificate from
  // pki() whose CN is the registration id (key unused).
  bool x509 = false;
};

struct EmulatorGroup {
  std::string key;  // base64 group key; members sign with the derived key
  nlohmann::json scenario = nlohmann::json::object();
};

struct EmulatorOptions {
  // Where config, PKI, devices.json and logs go; empty means a TempDir owned by the emulator.
  std::filesystem::path dir;
  std::string scope = "0ne00000000";
  std::vector<std::string> hubs = {"hub-a.emulator.test", "hub-b.emulator.test"};
  std::map<std::string, EmulatorDevice> devices;
  std::vector<EmulatorGroup> groups;
  // Extra top-level devices.json keys (e.g. {"unknown_status":404,"bad_auth":"connack"}).
  nlohmann::json extra = nlohmann::json::object();
  std::chrono::milliseconds ready_timeout{10000};
  std::string mosquitto = "mosquitto";
  std::string plugin_path;  // empty: the plugin this build produced (DPS_EMULATOR_PLUGIN)
  // Also listen for X.509 devices on x509_port(): TLS with a client certificate required and
  // verified against pki().ca_path() (mosquitto shows client certificates to the plugin only on
  // such a listener, so SAS and X.509 need separate ones).
  bool x509 = false;
  // Also listen for MQTT over WebSocket over TLS (any path, subprotocol "mqtt") on ws_port().
  bool websocket = false;
  // Leave out the listeners' "max_qos 1". The broker caps every delivery to a client at its
  // listener's max_qos, plugin messages included, so the qos2_flood scenario needs this; DPS
  // itself grants at most QoS 1 (dps-protocol.md section 3), which only holds with it false.
  bool allow_qos2 = false;
};

class DpsEmulator {
 public:
  // Starts the broker and waits (bounded) until it listens and the plugin logged "ready".
  // Throws std::runtime_error with mosquitto's stderr and log on failure.
  explicit DpsEmulator(EmulatorOptions opts = {});
  ~DpsEmulator();
  DpsEmulator(const DpsEmulator&) = delete;
  DpsEmulator& operator=(const DpsEmulator&) = delete;

  std::uint16_t port() const { return port_; }            // MQTT over TLS on 127.0.0.1
  std::uint16_t ws_port() const { return ws_port_; }      // 0 unless options.websocket
  std::uint16_t x509_port() const { return x509_port_; }  // 0 unless options.x509
  // WebSocket with a client certificate required; 0 unless options.x509 and options.websocket.
  std::uint16_t x509_ws_port() const { return x509_ws_port_; }
  std::string host() const { return "localhost"; }
  std::filesystem::path ca_path() const { return pki_->ca_path(); }
  const TestPki& pki() const { return *pki_; }
  const std::filesystem::path& dir() const { return dir_; }
  const std::string& scope() const { return opts_.scope; }
  const std::vector<std::string>& hubs() const { return opts_.hubs; }
  std::filesystem::path devices_path() const { return dir_ / "devices.json"; }
  std::filesystem::path log_path() const { return dir_ / "log.jsonl"; }
  std::filesystem::path config_path() const { return dir_ / "mosquitto.conf"; }
  std::filesystem::path broker_log_path() const { return dir_ / "mosquitto.log"; }
  pid_t pid() const { return broker_ ? broker_->pid() : -1; }
  bool running() const { return broker_ && broker_->running(); }

  // Adds or replaces an individual enrollment and rewrites devices.json.
  void set_device(const std::string& regid, const std::string& key,
                  nlohmann::json scenario = nlohmann::json::object());
  // Replaces the scenario of an existing device (throws if unknown).
  void set_scenario(const std::string& regid, nlohmann::json scenario);
  void remove_device(const std::string& regid);
  // Adds or replaces an X.509 individual enrollment for `regid` (the certificate's CN).
  void set_x509_device(const std::string& regid,
                       nlohmann::json scenario = nlohmann::json::object());
  void add_group(const std::string& key, nlohmann::json scenario = nlohmann::json::object());
  // Top-level devices.json key, e.g. set_option("unknown_status", 404).
  void set_option(const std::string& name, nlohmann::json value);

  // Every line of the plugin's log so far (across restarts), parsed.
  std::vector<nlohmann::json> events() const;
  // Events of one kind ("connect", "publish", "reply", …), optionally only for one client id.
  std::vector<nlohmann::json> events(std::string_view kind, std::string_view client_id = {}) const;
  std::size_t count_events(std::string_view kind, std::string_view client_id = {}) const;
  // Bounded wait until count_events(kind, client_id) >= n.
  bool wait_for_events(std::string_view kind, std::string_view client_id, std::size_t n,
                       std::chrono::milliseconds timeout) const;

  // Broker stderr plus the tail of mosquitto.log, for failure messages.
  std::string diagnostics() const;

  void stop();
  // Starts again on the same ports with the same files (the log keeps growing).
  void start();
  void restart() {
    stop();
    start();
  }

 private:
  void write_devices() const;
  void write_config() const;

  EmulatorOptions opts_;
  std::unique_ptr<TempDir> owned_dir_;
  std::filesystem::path dir_;
  std::unique_ptr<TestPki> pki_;
  std::uint16_t port_ = 0;
  std::uint16_t x509_port_ = 0;
  std::uint16_t x509_ws_port_ = 0;
  std::uint16_t ws_port_ = 0;
  nlohmann::json extra_;
  std::unique_ptr<Process> broker_;
};

}  // namespace dpsd::test
