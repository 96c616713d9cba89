// dpsctl: asks dpsd over D-Bus what happened and tells it to provision again, in the spirit of
// hostnamectl. It talks only D-Bus (io.dpsd.Provisioning1), never reads dpsd's files.
#include <getopt.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bus_client.hpp"
#include "core/text_sanitize.hpp"
#include "dpsd/version.hpp"

namespace {

using namespace dpsctl;
using dpsd::core::sanitize_text;

// dpsd's Reprovision policy (daemon/app/daemon.cpp), named in what we print when a call was
// deferred; the time itself always comes from dpsd.
constexpr const char* kReprovisionLimit = "Reprovision is limited to one every 10 s";

constexpr const char* kHelp = R"(Usage: dpsctl [OPTIONS] COMMAND

Queries and controls dpsd (Azure IoT Hub DPS provisioning) over the system bus.

Commands:
  status [--json]                    show the provisioning state (--json: the D-Bus properties
                                     as one JSON object, for scripts)
  reprovision [--wait] [--timeout SEC]
                                     register with DPS again (root or group dpsd): now, or when
                                     the rate limit allows (printed); with --wait, return once
                                     that registration has finished
  wait [--timeout SEC]               block until dpsd is provisioned; waits for dpsd to appear
                                     on the bus if it is not running yet. Watches signals, does
                                     not poll

Options:
      --timeout SEC   give up waiting after SEC seconds (default 120; 0 waits forever)
      --json          with status: JSON output
      --wait          with reprovision: wait for the outcome
  -h, --help          this text
      --version       print the version

Exit status:
  0  success (provisioned, when waiting)
  1  failed: DPS refused the registration (State=failed), or the call failed
  2  invalid command line
  3  timeout: the wanted state was not reached within --timeout
  4  dpsd is not running (nobody owns io.dpsd.Provisioning1), or no system bus
  5  access denied: Reprovision needs root or membership of group dpsd
)";

std::string format_time(std::uint64_t usec) {
  const std::time_t t = static_cast<std::time_t>(usec / 1000000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  (void)std::strftime(buf, sizeof buf, "%a %Y-%m-%d %H:%M:%S %Z", &tm);
  return buf;
}

// "12 s", "3 min 5 s", "2 h 4 min", "3 d 1 h": two units at most, like systemctl.
std::string span_words(std::uint64_t usec) {
  std::uint64_t s = usec / 1000000;
  if (s < 60) return std::to_string(s) + " s";
  if (s < 3600) return std::to_string(s / 60) + " min " + std::to_string(s % 60) + " s";
  if (s < 86400) return std::to_string(s / 3600) + " h " + std::to_string(s % 3600 / 60) + " min";
  return std::to_string(s / 86400) + " d " + std::to_string(s % 86400 / 3600) + " h";
}

std::uint64_t now_usec() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000 +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
}

std::string relative(std::uint64_t usec) {
  const std::uint64_t now = now_usec();
  if (usec > now) return "in " + span_words(usec - now);
  return span_words(now - usec) + " ago";
}

std::string or_dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

// Every line dpsctl prints holds text from the bus (dpsd relays what DPS said), so it goes
// through the one sanitizer: an ESC or a line break from outside never reaches the terminal.
void print_line(std::ostream& out, const std::string& text) {
  out << sanitize_text(text) << "\n";
}

void print_human(const Properties& p) {
  const auto line = [](const char* label, const std::string& value) {
    std::printf("%14s: %s\n", label, sanitize_text(value).c_str());
  };
  line("State", as_string(p, "State"));
  line("Hub", or_dash(as_string(p, "AssignedHub")));
  line("Device", or_dash(as_string(p, "DeviceId")));
  line("Registration", or_dash(as_string(p, "RegistrationId")) + " (scope " +
                           or_dash(as_string(p, "IdScope")) + ")");
  line("Substatus", or_dash(as_string(p, "Substatus")));
  line("Source", or_dash(as_string(p, "Source")));
  const std::uint64_t provisioned = as_u64(p, "ProvisionedUSec");
  line("Provisioned",
       provisioned ? format_time(provisioned) + " (" + relative(provisioned) + ")" : "never");
  const std::uint64_t last = as_u64(p, "LastAttemptUSec");
  line("Attempts", std::to_string(as_u64(p, "Attempts")) +
                       (last ? " (last " + relative(last) + ")" : std::string()));
  const std::uint64_t next = as_u64(p, "NextAttemptUSec");
  line("Next attempt", next ? relative(next) : "-");
  line("Last error", or_dash(as_string(p, "LastError")));
}

nlohmann::json to_json(const Properties& p) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, value] : p) {
    std::visit([&, n = name](const auto& v) { j[n] = v; }, value);
  }
  return j;
}

std::string describe_state(const Properties& p, bool present) {
  if (!present) return "dpsd is not running";
  std::string s = "State=" + as_string(p, "State");
  const std::string error = as_string(p, "LastError");
  if (!error.empty()) s += ", last error: " + error;
  return s;
}

struct Args {
  std::string command;
  bool json = false;
  bool wait = false;
  long timeout_sec = 120;
};

std::optional<std::chrono::steady_clock::time_point> deadline_of(const Args& args) {
  if (args.timeout_sec == 0) return std::nullopt;
  return std::chrono::steady_clock::now() + std::chrono::seconds(args.timeout_sec);
}

int timeout_failure(const Args& args, const std::string& goal, const Properties& p, bool present) {
  print_line(std::cerr, "dpsctl: timed out after " + std::to_string(args.timeout_sec) +
                            " s waiting for " + goal + " (" + describe_state(p, present) + ")");
  return kTimeout;
}

// "re-provisioning now", or when dpsd deferred the call: at what time, and why.
std::string start_words(std::uint64_t start_usec) {
  const std::uint64_t now = now_usec();
  // Half a second of slack: the call itself takes a moment, and "in 0 s" helps nobody.
  if (start_usec <= now + 500000) return "re-provisioning now";
  const std::uint64_t in_sec = (start_usec - now + 500000) / 1000000;
  return "re-provisioning at " + format_time(start_usec) + " (in " + span_words(in_sec * 1000000) +
         ": " + kReprovisionLimit + ")";
}

int cmd_status(const Args& args) {
  Client client;
  const Properties p = client.get_all();
  if (args.json) {
    // ASCII only: every control character and every non-ASCII code point is a \u escape, so
    // the JSON is valid and carries no raw byte a terminal would act on.
    std::cout << to_json(p).dump(2, ' ', /*ensure_ascii=*/true,
                                 nlohmann::json::error_handler_t::replace)
              << "\n";
  } else {
    print_human(p);
  }
  return kOk;
}

int cmd_wait(const Args& args) {
  Client client;
  client.watch();  // before reading, so no change falls in between
  Properties initial;
  bool present = true;
  try {
    initial = client.get_all();
  } catch (const Failure& f) {
    if (f.code != kNotRunning) throw;
    present = false;  // NameOwnerChanged tells us when it appears
  }
  Properties last;
  bool last_present = present;
  const bool ok = client.wait(
      initial, present,
      [&](const Properties& p, bool now_present) {
        last = p;
        last_present = now_present;
        if (!now_present) return false;
        const std::string state = as_string(p, "State");
        if (state == "failed") {
          throw Failure{kFailed,
                        "DPS refused the registration: " + or_dash(as_string(p, "LastError"))};
        }
        return state == "provisioned";
      },
      deadline_of(args));
  if (!ok) return timeout_failure(args, "dpsd to be provisioned", last, last_present);
  return kOk;
}

int cmd_reprovision(const Args& args) {
  Client client;
  if (args.wait) client.watch();
  const Properties before = client.get_all();
  const std::uint64_t start_usec = client.reprovision();
  print_line(std::cout, start_words(start_usec));
  std::cout.flush();
  if (!args.wait) return kOk;
  // Done when the registration dpsd runs at start_usec (or a later one) succeeded:
  // ProvisionedUSec (µs) moves to start_usec or after. State alone cannot tell: dpsd keeps
  // State=provisioned while it confirms a valid assignment. A refusal is final only when it
  // leaves State=failed after an attempt of ours; transient failures are retried by dpsd, so we
  // keep waiting (until --timeout) and report LastError then. An attempt "of ours" started at
  // start_usec; a second of slack covers dpsd stamping LastAttemptUSec a moment before it
  // computed start_usec, or its timer's realtime reading.
  const std::uint64_t provisioned_before = as_u64(before, "ProvisionedUSec");
  const std::uint64_t ours_from = start_usec > 1000000 ? start_usec - 1000000 : 0;
  bool started = false;
  Properties last = before;
  bool last_present = true;
  const bool ok = client.wait(
      before, true,
      [&](const Properties& p, bool present) {
        last = p;
        last_present = present;
        if (!present) return false;
        const std::string state = as_string(p, "State");
        const std::uint64_t attempt = as_u64(p, "LastAttemptUSec");
        // A call that joined a running registration gets that registration's start time, which
        // LastAttemptUSec already showed: "ours" is by time, not by change.
        if (attempt != 0 && attempt >= ours_from) started = true;
        if (state == "failed" && started) {
          throw Failure{kFailed,
                        "DPS refused the registration: " + or_dash(as_string(p, "LastError"))};
        }
        const std::uint64_t provisioned = as_u64(p, "ProvisionedUSec");
        return state == "provisioned" && provisioned != provisioned_before &&
               provisioned >= start_usec;
      },
      deadline_of(args));
  if (!ok) return timeout_failure(args, "the registration to finish", last, last_present);
  return kOk;
}

int usage_error(const std::string& message) {
  print_line(std::cerr, "dpsctl: " + message);
  std::cerr << "Try 'dpsctl --help'.\n";
  return kUsage;
}

}  // namespace

int main(int argc, char** argv) {
  enum { kJson = 1000, kWait, kTimeoutOpt, kVersion };
  static const option kLongOptions[] = {
      {"json", no_argument, nullptr, kJson},
      {"wait", no_argument, nullptr, kWait},
      {"timeout", required_argument, nullptr, kTimeoutOpt},
      {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, kVersion},
      {nullptr, 0, nullptr, 0},
  };
  Args args;
  bool timeout_given = false;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "+h", kLongOptions, nullptr)) != -1 ||
         (optind < argc && args.command.empty())) {
    if (c == -1) {  // the command; options may follow it
      args.command = argv[optind++];
      continue;
    }
    switch (c) {
      case kJson:
        args.json = true;
        break;
      case kWait:
        args.wait = true;
        break;
      case kTimeoutOpt: {
        char* end = nullptr;
        errno = 0;
        const long v = std::strtol(optarg, &end, 10);
        if (errno != 0 || end == optarg || *end != '\0' || v < 0) {
          return usage_error(std::string("--timeout wants a number of seconds, not '") + optarg +
                             "'");
        }
        args.timeout_sec = v;
        timeout_given = true;
        break;
      }
      case 'h':
        std::cout << kHelp;
        return kOk;
      case kVersion:
        std::cout << "dpsctl " << dpsd::kVersion << "\n";
        return kOk;
      default:
        return usage_error(std::string("unknown or incomplete option '") + argv[optind - 1] + "'");
    }
  }
  if (optind < argc) return usage_error(std::string("unexpected argument '") + argv[optind] + "'");
  if (args.command.empty()) return usage_error("missing command (status, reprovision, wait)");
  if (args.json && args.command != "status") return usage_error("--json is for status only");
  if (args.wait && args.command != "reprovision") {
    return usage_error("--wait is for reprovision only");
  }
  if (timeout_given && args.command == "status") return usage_error("status takes no --timeout");

  try {
    if (args.command == "status") return cmd_status(args);
    if (args.command == "wait") return cmd_wait(args);
    if (args.command == "reprovision") return cmd_reprovision(args);
  } catch (const Failure& f) {
    print_line(std::cerr, "dpsctl: " + f.message);
    return f.code;
  }
  return usage_error("unknown command '" + args.command + "'");
}
