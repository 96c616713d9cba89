// dpsctl: asks dpsd over D-Bus what happened and tells it to provision again, in the spirit of
// hostnamectl. It talks only D-Bus (io.dpsd.Provisioning1), never reads dpsd's files. This file
// reads the command line; commands.cpp runs the commands, output.cpp words what they print.
#include <getopt.h>

#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>

#include "bus_errors.hpp"
#include "commands.hpp"
#include "dpsd/version.hpp"
#include "output.hpp"

namespace {

using namespace dpsctl;

constexpr const char* kHelp = R"(Usage: dpsctl [OPTIONS] [COMMAND]

Queries and controls dpsd (Azure IoT Hub DPS provisioning) over the system bus.

Commands:
  status [--json[=pretty|short]]     show the provisioning state (the default command;
                                     --json: the D-Bus properties as one JSON object, for
                                     scripts; a bare --json is short, one line)
  reprovision [--wait] [--timeout SEC]
                                     register with DPS again (root or group dpsd): now, or when
                                     the rate limit allows (printed); with --wait, return once
                                     that registration has finished
  wait [--timeout SEC]               block until dpsd is provisioned; waits for dpsd to appear
                                     on the bus if it is not running yet. Watches signals, does
                                     not poll

Options:
      --timeout SEC   give up waiting after SEC seconds (default 120; 0 waits forever)
      --json[=FORM]   with status: JSON output, FORM pretty or short (the default)
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

int usage_error(const std::string& message) {
  print_line(std::cerr, "dpsctl: " + message);
  std::cerr << "Try 'dpsctl --help'.\n";
  return kUsage;
}

}  // namespace

int main(int argc, char** argv) {
  enum { kJson = 1000, kWait, kTimeoutOpt, kVersion };
  static const option kLongOptions[] = {
      {"json", optional_argument, nullptr, kJson},          {"wait", no_argument, nullptr, kWait},
      {"timeout", required_argument, nullptr, kTimeoutOpt}, {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, kVersion},          {nullptr, 0, nullptr, 0},
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
        if (optarg == nullptr || std::string_view(optarg) == "short") {
          args.json_pretty = false;
        } else if (std::string_view(optarg) == "pretty") {
          args.json_pretty = true;
        } else {
          return usage_error("--json wants pretty or short, not '" + escape_argument(optarg) + "'");
        }
        break;
      case kWait:
        args.wait = true;
        break;
      case kTimeoutOpt: {
        char* end = nullptr;
        errno = 0;
        const long v = std::strtol(optarg, &end, 10);
        if (errno != 0 || end == optarg || *end != '\0' || v < 0) {
          return usage_error("--timeout wants a number of seconds, not '" +
                             escape_argument(optarg) + "'");
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
        return usage_error("unknown or incomplete option '" + escape_argument(argv[optind - 1]) +
                           "'");
    }
  }
  if (optind < argc)
    return usage_error("unexpected argument '" + escape_argument(argv[optind]) + "'");
  if (args.command.empty()) args.command = "status";  // as systemctl, hostnamectl, networkctl
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
  return usage_error("unknown command '" + escape_argument(args.command) + "'");
}
