#include "support/dps_emulator.hpp"

#include <pwd.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "support/files.hpp"
#include "support/net.hpp"
#include "support/wait.hpp"

#ifndef DPS_EMULATOR_PLUGIN
#error "DPS_EMULATOR_PLUGIN must name the built dps_emulator plugin"
#endif

namespace dpsd::test {
namespace {

std::string tail(const std::string& text, std::size_t max) {
  return text.size() <= max ? text : "…" + text.substr(text.size() - max);
}

std::string current_user() {
  // mosquitto started as root drops to user "mosquitto", which could not read our temp files.
  if (::geteuid() == 0) return "root";
  if (const passwd* pw = ::getpwuid(::geteuid()); pw != nullptr) return pw->pw_name;
  return "root";
}

}  // namespace

std::filesystem::path emulator_plugin_path() {
  return DPS_EMULATOR_PLUGIN;
}

// Built next to the plugin (tests/emulator/); the runner links this library, so its path cannot
// come from a generator expression here without a dependency cycle.
std::filesystem::path emulator_runner_path() {
  return emulator_plugin_path().parent_path() / "dps-emulator-run";
}

DpsEmulator::DpsEmulator(EmulatorOptions opts) : opts_(std::move(opts)), extra_(opts_.extra) {
  if (opts_.dir.empty()) {
    owned_dir_ = std::make_unique<TempDir>("dps-emulator");
    dir_ = owned_dir_->path();
  } else {
    dir_ = opts_.dir;
    std::filesystem::create_directories(dir_);
  }
  if (opts_.plugin_path.empty()) opts_.plugin_path = DPS_EMULATOR_PLUGIN;
  if (!extra_.is_object()) extra_ = nlohmann::json::object();
  std::filesystem::create_directories(dir_ / "pki");
  pki_ = std::make_unique<TestPki>(dir_ / "pki");
  port_ = free_port();
  if (opts_.x509) x509_port_ = free_port();
  if (opts_.websocket) ws_port_ = free_port();
  if (opts_.x509 && opts_.websocket) x509_ws_port_ = free_port();
  write_devices();
  write_config();
  start();
}

DpsEmulator::~DpsEmulator() {
  stop();
}

void DpsEmulator::write_config() const {
  std::ostringstream c;
  c << "# written by dpsd::test::DpsEmulator\n"
    << "per_listener_settings false\n"
    << "allow_anonymous false\n"
    << "persistence false\n"
    // Azure's front ends answer at once; mosquitto's default Nagle would hold each small reply
    // for the client's delayed ACK (~40 ms) and make every run look that much slower.
    << "set_tcp_nodelay true\n"
    << "user " << current_user() << "\n"
    << "log_dest file " << broker_log_path().string() << "\n"
    << "log_type all\n"
    << "connection_messages true\n"
    << "plugin " << opts_.plugin_path << "\n"
    << "plugin_opt_devices " << devices_path().string() << "\n"
    << "plugin_opt_log " << log_path().string() << "\n";
  // Every listener: loopback only, TLS from the test PKI, and QoS at most 1 as DPS grants
  // (dps-protocol.md section 3).
  const auto listener = [&](std::uint16_t port, bool websocket, bool client_certificate) {
    c << "listener " << port << " 127.0.0.1\n";
    // socket_domain: without it a WebSocket listener binds every interface, not just loopback.
    if (websocket) c << "protocol websockets\nsocket_domain ipv4\n";
    if (!opts_.allow_qos2) c << "max_qos 1\n";
    c << "cafile " << pki_->ca_path().string() << "\n"
      << "certfile " << pki_->server_cert().string() << "\n"
      << "keyfile " << pki_->server_key().string() << "\n"
      << "tls_version tlsv1.2\n";
    // The broker verifies the chain; the plugin checks CN == registration id.
    if (client_certificate) c << "require_certificate true\nuse_identity_as_username false\n";
  };
  listener(port_, false, false);
  if (ws_port_ != 0) listener(ws_port_, true, false);
  if (x509_port_ != 0) listener(x509_port_, false, true);
  // X.509 devices behind a 443-only firewall: WebSocket over TLS with a client certificate.
  if (x509_ws_port_ != 0) listener(x509_ws_port_, true, true);
  write_file(config_path(), c.str(), 0600);
}

void DpsEmulator::write_devices() const {
  nlohmann::json doc = extra_;
  doc["scope"] = opts_.scope;
  doc["hubs"] = opts_.hubs;
  doc["devices"] = nlohmann::json::object();
  for (const auto& [regid, dev] : opts_.devices) {
    doc["devices"][regid] = {{"key", dev.key}, {"scenario", dev.scenario}};
    if (dev.x509) doc["devices"][regid]["x509"] = true;
  }
  doc["groups"] = nlohmann::json::array();
  for (const auto& g : opts_.groups) {
    doc["groups"].push_back({{"key", g.key}, {"scenario", g.scenario}});
  }
  // Write then rename: the plugin must never read a half-written file, and the new inode makes
  // the change visible even when the mtime does not move (coarse timestamps).
  const auto tmp = dir_ / "devices.json.tmp";
  write_file(tmp, doc.dump(2) + "\n", 0600);
  std::filesystem::rename(tmp, devices_path());
}

void DpsEmulator::set_device(const std::string& regid, const std::string& key,
                             nlohmann::json scenario) {
  opts_.devices[regid] = EmulatorDevice{key, std::move(scenario)};
  write_devices();
}

void DpsEmulator::set_scenario(const std::string& regid, nlohmann::json scenario) {
  auto it = opts_.devices.find(regid);
  if (it == opts_.devices.end()) {
    throw std::invalid_argument("DpsEmulator::set_scenario: unknown device " + regid);
  }
  it->second.scenario = std::move(scenario);
  write_devices();
}

void DpsEmulator::set_x509_device(const std::string& regid, nlohmann::json scenario) {
  EmulatorDevice device;
  device.scenario = std::move(scenario);
  device.x509 = true;
  opts_.devices[regid] = std::move(device);
  write_devices();
}

void DpsEmulator::remove_device(const std::string& regid) {
  opts_.devices.erase(regid);
  write_devices();
}

void DpsEmulator::add_group(const std::string& key, nlohmann::json scenario) {
  opts_.groups.push_back(EmulatorGroup{key, std::move(scenario)});
  write_devices();
}

void DpsEmulator::set_option(const std::string& name, nlohmann::json value) {
  extra_[name] = std::move(value);
  write_devices();
}

std::vector<nlohmann::json> DpsEmulator::events() const {
  std::vector<nlohmann::json> out;
  std::ifstream in(log_path());
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    // The plugin may be mid-line; an unparsable last line is simply not there yet.
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

std::vector<nlohmann::json> DpsEmulator::events(std::string_view kind,
                                                std::string_view client_id) const {
  std::vector<nlohmann::json> out;
  for (auto& e : events()) {
    if (e.value("event", "") != kind) continue;
    if (!client_id.empty() && e.value("client_id", "") != client_id) continue;
    out.push_back(std::move(e));
  }
  return out;
}

std::size_t DpsEmulator::count_events(std::string_view kind, std::string_view client_id) const {
  return events(kind, client_id).size();
}

bool DpsEmulator::wait_for_events(std::string_view kind, std::string_view client_id, std::size_t n,
                                  std::chrono::milliseconds timeout) const {
  return wait_until([&] { return count_events(kind, client_id) >= n; }, timeout);
}

std::string DpsEmulator::diagnostics() const {
  std::string out = "mosquitto stderr:\n";
  if (broker_) out += tail(broker_->stderr_text(), 4000);
  out += "\nmosquitto.log:\n";
  try {
    out += tail(read_file(broker_log_path()), 4000);
  } catch (const std::exception&) {
    out += "(none)";
  }
  return out;
}

void DpsEmulator::stop() {
  if (broker_) broker_->stop();
}

void DpsEmulator::start() {
  stop();
  const std::size_t ready_before = count_events("ready");
  ProcessOptions po;
  po.stdout_path = dir_ / "mosquitto.stdout";
  po.stderr_path = dir_ / "mosquitto.stderr";
  broker_ = std::make_unique<Process>(
      std::vector<std::string>{opts_.mosquitto, "-c", config_path().string()}, po);
  const bool ok = wait_until(
      [&] {
        if (!broker_->running()) return true;  // stop waiting; reported below
        return count_events("ready") > ready_before && wait_for_tcp_port(port_, {}) &&
               (x509_port_ == 0 || wait_for_tcp_port(x509_port_, {})) &&
               (ws_port_ == 0 || wait_for_tcp_port(ws_port_, {}));
      },
      opts_.ready_timeout);
  if (!ok || !broker_->running()) {
    std::string why =
        !broker_->running()
            ? "mosquitto exited with " + std::to_string(broker_->exit_code().value_or(-1))
            : "not ready after " + std::to_string(opts_.ready_timeout.count()) + " ms";
    std::string diag = diagnostics();
    broker_->stop();
    throw std::runtime_error("DpsEmulator: " + why + " (port " + std::to_string(port_) + ", dir " +
                             dir_.string() + ")\n" + diag);
  }
}

}  // namespace dpsd::test
