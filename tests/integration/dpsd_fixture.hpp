#pragma once
// What every integration test needs around the real dpsd binary: a device directory (config,
// key, state and runtime dirs) pointed at a DpsEmulator, and a bounded `dpsd --once` run.
#include <gtest/gtest.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/sas_token.hpp"
#include "support/dps_emulator.hpp"
#include "support/files.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace dpsd::test {

inline std::string random_key() {
  std::vector<std::uint8_t> bytes(32);
  RAND_bytes(bytes.data(), static_cast<int>(bytes.size()));
  return core::base64_encode(bytes);
}

// A registration id unique to the running test: prefix + test name, lower case, every other
// character a '-' (DPS allows only lowercase alnum and - . _ :).
inline std::string regid_for_this_test(const std::string& prefix, const std::string& suffix = "") {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string regid = prefix + info->name() + suffix;
  for (auto& c : regid) {
    c = std::isalnum(static_cast<unsigned char>(c))
            ? static_cast<char>(std::tolower(static_cast<unsigned char>(c)))
            : '-';
  }
  return regid;
}

// A device enrolled individually at the emulator with the given scenario.
class Device;
std::unique_ptr<Device> enroll_device(DpsEmulator& emulator, const std::string& regid,
                                      nlohmann::json scenario);

struct RunResult {
  int exit_code = -1;
  std::string out;
  std::string err;
  std::chrono::milliseconds took{0};
};

// One device: its own config, key file, state and runtime directories.
class Device {
 public:
  Device(const DpsEmulator& emulator, std::string regid, std::string key = random_key())
      : emulator_(emulator), regid_(std::move(regid)), key_(std::move(key)) {
    std::filesystem::create_directories(dir_ / "keys");
    ::chmod((dir_ / "keys").c_str(), 0700);
    write_file(key_path(), key_ + "\n", 0600);
    write_config();
  }

  const std::string& regid() const { return regid_; }
  const std::string& key() const { return key_; }
  std::filesystem::path dir() const { return dir_.path(); }
  std::filesystem::path config_path() const { return dir_ / "config.toml"; }
  std::filesystem::path key_path() const { return dir_ / "keys" / "device.key"; }
  std::filesystem::path state_path() const { return dir_ / "state" / "state.json"; }
  std::filesystem::path env_path() const { return dir_ / "run" / "iothub.env"; }

  // Rewrites config.toml; `extra` is appended verbatim (whole tables, e.g. "[retry]\n…").
  void write_config(const std::string& extra = "", const std::string& enrollment = "individual",
                    std::optional<std::string> endpoint = {},
                    std::optional<std::filesystem::path> trust_bundle = {},
                    const std::string& provisioning_extra = "") {
    const std::string ep = endpoint.value_or("localhost:" + std::to_string(emulator_.port()));
    const std::string bundle = trust_bundle.value_or(emulator_.ca_path()).string();
    std::string text = "[provisioning]\nglobal_endpoint = \"" + ep + "\"\nid_scope = \"" +
                       emulator_.scope() + "\"\nregistration_id = \"" + regid_ + "\"\n" +
                       provisioning_extra +
                       "[provisioning.attestation]\nmethod = \"symmetric_key\"\nenrollment = \"" +
                       enrollment + "\"\nsymmetric_key = \"file://" + key_path().string() +
                       "\"\n[tls]\ntrust_bundle = \"" + bundle +
                       "\"\n[network]\nconnect_timeout = \"3s\"\ntls_handshake_timeout = "
                       "\"3s\"\nresponse_timeout = \"5s\"\n[retry]\ninitial = \"200ms\"\nmax = "
                       "\"1s\"\n[paths]\nstate_dir = \"" +
                       (dir_ / "state").string() + "\"\nruntime_dir = \"" +
                       (dir_ / "run").string() + "\"\n" + extra;
    write_file(config_path(), text, 0644);
  }

  RunResult run(std::vector<std::string> args,
                std::chrono::milliseconds timeout = std::chrono::seconds(60)) const {
    std::vector<std::string> argv{DPSD_BINARY, "--config", config_path().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto start = std::chrono::steady_clock::now();
    Process dpsd(argv);
    RunResult result;
    const auto code = dpsd.wait_for_exit(timeout);
    result.took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    if (!code) dpsd.stop();
    result.exit_code = code.value_or(-1);
    result.out = dpsd.stdout_text();
    result.err = dpsd.stderr_text();
    return result;
  }

  RunResult once(std::vector<std::string> extra = {}) const {
    std::vector<std::string> args{"--once"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run(args);
  }

  bool has_state() const { return std::filesystem::exists(state_path()); }
  std::string state_text() const { return read_file(state_path()); }
  nlohmann::json state() const { return nlohmann::json::parse(state_text()); }
  std::string env_text() const { return read_file(env_path()); }

 private:
  const DpsEmulator& emulator_;
  std::string regid_;
  std::string key_;
  TempDir dir_{"dpsd-device"};
};

inline std::unique_ptr<Device> enroll_device(DpsEmulator& emulator, const std::string& regid,
                                             nlohmann::json scenario) {
  auto device = std::make_unique<Device>(emulator, regid);
  emulator.set_device(regid, device->key(), std::move(scenario));
  return device;
}

inline std::string describe(const RunResult& r) {
  return "exit " + std::to_string(r.exit_code) + " after " + std::to_string(r.took.count()) +
         " ms\n--- stdout\n" + r.out + "--- stderr\n" + r.err;
}

}  // namespace dpsd::test
