#include "bus_errors.hpp"

#include <sdbus-c++/Error.h>

#include <array>
#include <string_view>

#include "output.hpp"

namespace dpsctl {
namespace {

constexpr std::string_view kErrServiceUnknown = "org.freedesktop.DBus.Error.ServiceUnknown";
constexpr std::string_view kErrNameHasNoOwner = "org.freedesktop.DBus.Error.NameHasNoOwner";
constexpr std::string_view kErrAccessDenied = "org.freedesktop.DBus.Error.AccessDenied";
constexpr std::string_view kErrNoReply = "org.freedesktop.DBus.Error.NoReply";
constexpr std::string_view kErrTimeout = "org.freedesktop.DBus.Error.Timeout";
// sd-bus names a local errno: ECONNRESET is Disconnected, the others keep their errno name.
constexpr std::array<std::string_view, 5> kBusLost = {
    "org.freedesktop.DBus.Error.Disconnected", "System.Error.ENOTCONN", "System.Error.ECONNRESET",
    "System.Error.EPIPE", "System.Error.ESHUTDOWN"};

// sdbus-c++ words a local failure as "<what it did> (<strerror>)" (sdbus::createError); the
// strerror part is what a user needs.
std::string errno_words(const std::string& message) {
  const auto open = message.rfind(" (");
  if (message.empty() || message.back() != ')' || open == std::string::npos) return message;
  return message.substr(open + 2, message.size() - open - 3);
}

}  // namespace

Failure call_failure(const sdbus::Error& error, const std::string& what) {
  if (means_not_running(error)) {
    return {kNotRunning,
            "dpsd is not running (nobody owns io.dpsd.Provisioning1 on the system bus)"};
  }
  // The message comes from dbus-daemon (its policy) or from dpsd (its own check): from the bus.
  const std::string message = escape_once(error.getMessage());
  if (error.getName() == kErrAccessDenied) {
    return {kAccessDenied, what + ": access denied (root or group dpsd only)" +
                               (message.empty() ? "" : ": " + message)};
  }
  return {kFailed, what + ": " + message +
                       (error.getName().empty() ? "" : " (" + escape_once(error.getName()) + ")")};
}

Failure connect_failure(const sdbus::Error& error) {
  return {kNotRunning,
          "cannot connect to the system bus: " + escape_once(errno_words(error.getMessage()))};
}

bool means_not_running(const sdbus::Error& error) {
  return error.getName() == kErrServiceUnknown || error.getName() == kErrNameHasNoOwner;
}

bool means_bus_lost(const sdbus::Error& error) {
  for (const auto name : kBusLost) {
    if (error.getName() == name) return true;
  }
  return false;
}

bool means_timeout(const sdbus::Error& error) {
  // NoReply: dbus-daemon's answer when the callee went away or did not answer in time.
  return error.getName() == kErrTimeout || error.getName() == kErrNoReply;
}

}  // namespace dpsctl
