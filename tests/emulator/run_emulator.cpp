// dps-emulator-run: starts the DPS emulator for demos and manual testing, prints where it
// listens as one JSON line, and keeps it up until SIGTERM/SIGINT.
//
//   dps-emulator-run --dir DIR [--scope S] [--device REGID=KEY]... [--group-key KEY]...
//                    [--scenario REGID=JSON]...
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "support/dps_emulator.hpp"

namespace {

int usage(const std::string& why) {
  std::cerr << "dps-emulator-run: " << why << "\n"
            << "usage: dps-emulator-run --dir DIR [--scope S] [--device REGID=KEY]...\n"
            << "                        [--group-key KEY]... [--scenario REGID=JSON]...\n";
  return 2;
}

bool split_pair(const std::string& arg, std::string& left, std::string& right) {
  auto eq = arg.find('=');
  if (eq == std::string::npos || eq == 0) return false;
  left = arg.substr(0, eq);
  right = arg.substr(eq + 1);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  dpsd::test::EmulatorOptions opts;
  std::map<std::string, nlohmann::json> scenarios;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (i + 1 >= argc) return usage("missing value after " + std::string(flag));
    std::string value = argv[++i];
    std::string left, right;
    if (flag == "--dir") {
      opts.dir = value;
    } else if (flag == "--scope") {
      opts.scope = value;
    } else if (flag == "--device") {
      if (!split_pair(value, left, right)) return usage("--device wants REGID=KEY");
      opts.devices[left].key = right;
    } else if (flag == "--group-key") {
      opts.groups.push_back({value, nlohmann::json::object()});
    } else if (flag == "--scenario") {
      if (!split_pair(value, left, right)) return usage("--scenario wants REGID=JSON");
      auto j = nlohmann::json::parse(right, nullptr, false);
      if (j.is_discarded() || !j.is_object()) return usage("--scenario: not a JSON object");
      scenarios[left] = j;
    } else {
      return usage("unknown option " + std::string(flag));
    }
  }
  if (opts.dir.empty()) return usage("--dir is required");
  for (auto& [regid, scenario] : scenarios) {
    auto it = opts.devices.find(regid);
    if (it == opts.devices.end()) return usage("--scenario for undeclared device " + regid);
    it->second.scenario = scenario;
  }

  // Block the stop signals before anything starts so sigwait() sees them; children get a clean
  // mask from dpsd::test::Process.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigprocmask(SIG_BLOCK, &stop_signals, nullptr);

  try {
    dpsd::test::DpsEmulator emulator(opts);
    nlohmann::json ready = {
        {"port", emulator.port()},        {"ca", emulator.ca_path().string()},
        {"scope", emulator.scope()},      {"pid", emulator.pid()},
        {"dir", emulator.dir().string()}, {"log", emulator.log_path().string()}};
    std::cout << ready.dump() << std::endl;
    int sig = 0;
    sigwait(&stop_signals, &sig);
    emulator.stop();
  } catch (const std::exception& e) {
    std::cerr << "dps-emulator-run: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
