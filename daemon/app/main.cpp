// dpsd: provisions this device with Azure IoT Hub DPS and keeps the assignment.
#include <getopt.h>
#include <sys/prctl.h>

#include <cstdlib>
#include <iostream>
#include <string>

#include "app/check_config.hpp"
#include "app/daemon.hpp"
#include "dpsd/version.hpp"
#include "io/config_files.hpp"
#include "io/instance_lock.hpp"
#include "io/log.hpp"

namespace {

constexpr const char* kUsage = R"(Usage: dpsd [OPTIONS]

Provisions this device with Azure IoT Hub Device Provisioning Service (DPS) over MQTT/TLS and
writes the assignment to <state_dir>/state.json and <runtime_dir>/iothub.env.

Options:
  -c, --config PATH    configuration file (default /etc/dpsd/config.toml; drop-ins are read
                       from config.d/*.toml beside it)
      --check-config   validate the configuration and the key source, print every problem
      --once           provision (or reuse a state whose inputs match) and exit
      --force          with --once: register with DPS even if the state file matches
      --timeout SEC    with --once: give up after SEC seconds of failed attempts (default 120)
      --no-bus         do not connect to the system bus (status only in logs and files)
  -v, --verbose        log debug messages
      --version        print the version
  -h, --help           this text

Without --once, dpsd runs until SIGTERM: it serves a cached assignment at once, retries with
backoff forever, never exits because provisioning failed, and re-reads the configuration on
SIGHUP (re-provisioning when the scope, registration id, endpoint or key changed).

Exit status:
  0  provisioned (or, without --once, stopped by SIGTERM)
  1  DPS refused the registration (401, 404, failed, disabled, ...)
  2  invalid command line, configuration or key
  3  --once gave up: DPS not reachable or not answering within --timeout
  4  provisioned, but the state file could not be written
)";

}  // namespace

int main(int argc, char** argv) {
  // Before anything reads a key: a non-dumpable process writes no core file (whatever the
  // unit's LimitCORE= or the system's core_pattern say), and other processes of the same user
  // cannot ptrace it or read its /proc/PID/mem or environ (they become root's). A core dump or
  // a debugger attached by another service running as dpsd would otherwise see the device key,
  // the PIN and the proxy password in memory. The flag survives nothing dpsd does later
  // (no execve, no setuid). A failure is not fatal: the unit's LimitCORE=0 still holds.
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    std::cerr << "dpsd: warning: cannot mark the process non-dumpable\n";
  }
  dpsd::app::Options options;
  enum { kCheckConfig = 1000, kOnce, kForce, kTimeout, kVersion, kNoBus };
  static const option kLongOptions[] = {
      {"config", required_argument, nullptr, 'c'},
      {"check-config", no_argument, nullptr, kCheckConfig},
      {"once", no_argument, nullptr, kOnce},
      {"force", no_argument, nullptr, kForce},
      {"timeout", required_argument, nullptr, kTimeout},
      {"no-bus", no_argument, nullptr, kNoBus},
      {"verbose", no_argument, nullptr, 'v'},
      {"version", no_argument, nullptr, kVersion},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0},
  };
  int opt = 0;
  while ((opt = getopt_long(argc, argv, "c:vh", kLongOptions, nullptr)) != -1) {
    switch (opt) {
      case 'c':
        options.config_path = optarg;
        break;
      case kCheckConfig:
        options.check_config = true;
        break;
      case kOnce:
        options.once = true;
        break;
      case kForce:
        options.force = true;
        break;
      case kNoBus:
        options.no_bus = true;
        break;
      case kTimeout: {
        char* end = nullptr;
        const long value = std::strtol(optarg, &end, 10);
        if (end == optarg || *end != '\0' || value <= 0) {
          std::cerr << "dpsd: --timeout wants a positive number of seconds, not '" << optarg
                    << "'\n";
          return dpsd::core::kExitConfig;
        }
        options.once_timeout = std::chrono::seconds(value);
        break;
      }
      case 'v':
        options.verbose = true;
        break;
      case kVersion:
        std::cout << "dpsd " << dpsd::kVersion << "\n";
        return 0;
      case 'h':
        std::cout << kUsage;
        return 0;
      default:
        std::cerr << kUsage;
        return dpsd::core::kExitConfig;
    }
  }
  if (optind != argc) {
    std::cerr << "dpsd: unexpected argument '" << argv[optind] << "'\n" << kUsage;
    return dpsd::core::kExitConfig;
  }
  dpsd::io::set_log_verbose(options.verbose);

  if (options.check_config) return dpsd::app::check_config(options.config_path);

  dpsd::core::ConfigResult loaded = dpsd::io::load_config(options.config_path);
  if (!loaded.config) {
    for (const auto& problem : loaded.problems) dpsd::io::log_error(problem.to_string());
    return dpsd::core::kExitConfig;
  }
  const auto lock = dpsd::io::InstanceLock::acquire(loaded.config->state_dir);  // one writer
  if (const int code = dpsd::io::report_lock_failure(lock); code != 0) return code;
  try {
    dpsd::app::Daemon daemon(std::move(*loaded.config), options);
    return daemon.run();
  } catch (const std::exception& e) {
    // Setup failures of the adapters (sd_event_new, mosquitto_new) are exceptions by design;
    // everything that can go wrong at run time is an error value and a retry instead.
    dpsd::io::log_error(std::string("fatal: ") + e.what());
    return 70;
  }
}
