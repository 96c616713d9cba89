#pragma once
// dpsctl's exit codes, and how a failure reported by sdbus-c++ maps to one.
#include <string>

namespace sdbus {
class Error;
}

namespace dpsctl {

// Exit codes, documented in --help and the README.
enum Exit : int {
  kOk = 0,
  kFailed = 1,        // dpsd reports failure (DPS refused) or the call failed
  kUsage = 2,         // invalid command line
  kTimeout = 3,       // --timeout passed before the wanted state
  kNotRunning = 4,    // no dpsd on the system bus (or no system bus)
  kAccessDenied = 5,  // the caller is not root nor in group dpsd
};

// A failure with the exit code it maps to and a message naming the cause. The message is ready
// for the terminal: every piece from outside was escaped once where it came in (output.hpp).
struct Failure {
  int code;
  std::string message;
};

// The failure of the call `what` ("Reprovision", …) that sdbus-c++ reported as `error`:
// ServiceUnknown / NameHasNoOwner → kNotRunning, AccessDenied → kAccessDenied, else kFailed.
Failure call_failure(const sdbus::Error& error, const std::string& what);

// sdbus-c++ could not open the system bus (it is not there, or refuses us): kNotRunning.
Failure connect_failure(const sdbus::Error& error);

// Nobody owns dpsd's name right now: it is not running, or went away while we asked.
bool means_not_running(const sdbus::Error& error);

// The connection to the bus itself is gone (dbus-daemon stopped or dropped us).
bool means_bus_lost(const sdbus::Error& error);

// The call got no answer in time (the method-call timeout, or the deadline we set).
bool means_timeout(const sdbus::Error& error);

}  // namespace dpsctl
