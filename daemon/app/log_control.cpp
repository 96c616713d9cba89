// LogControl1 on raw sd-bus, like io.dpsd.Provisioning1 (app/bus_service.cpp).
//
// Why the caller check is a synchronous call here while bus_service asks asynchronously:
// sd-bus runs property setters synchronously and offers no way to defer the reply of a
// Properties.Set. The one round trip to the bus daemon (GetConnectionCredentials, answered from
// its own tables) happens only when an operator changes the log level, which is rare and
// bounded by sd-bus's method-call timeout.
#include "app/log_control.hpp"

#include <systemd/sd-bus.h>

#include <memory>
#include <string>

#include "app/bus_caller.hpp"
#include "core/errno_text.hpp"
#include "core/log_format.hpp"
#include "io/c_ptr.hpp"
#include "io/log.hpp"

namespace dpsd::app {
namespace {

constexpr const char* kObjectPath = "/org/freedesktop/LogControl1";
constexpr const char* kInterface = "org.freedesktop.LogControl1";
constexpr const char* kPrivilegedGroup = "dpsd";

// Root or group dpsd, as the bus daemon reports the sender of `m` (GetConnectionCredentials,
// as bus_service asks; never /proc: racy, and hidden under ProtectProc=invisible).
bool caller_is_privileged(sd_bus_message* m) {
  const char* sender = sd_bus_message_get_sender(m);
  if (sender == nullptr) return false;
  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message* raw = nullptr;
  const int r = sd_bus_call_method(sd_bus_message_get_bus(m), "org.freedesktop.DBus",
                                   "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                   "GetConnectionCredentials", &error, &raw, "s", sender);
  sd_bus_error_free(&error);
  if (r < 0) return false;
  const io::CPtr<sd_bus_message, sd_bus_message_unref> reply(raw);
  CallerCredentials caller;
  if (parse_credentials(reply.get(), caller) < 0) return false;
  return is_privileged(caller, kPrivilegedGroup);
}

int refuse(sd_bus_message* m, const char* property, sd_bus_error* error) {
  io::log_notice(std::string("D-Bus: refused setting ") + property + " to " +
                 (sd_bus_message_get_sender(m) ? sd_bus_message_get_sender(m) : "?"));
  return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                           "setting %s requires root or membership of group %s", property,
                           kPrivilegedGroup);
}

int get_level(sd_bus*, const char*, const char*, const char*, sd_bus_message* reply, void*,
              sd_bus_error*) {
  return sd_bus_message_append(reply, "s",
                               std::string(core::priority_name(io::log_max_priority())).c_str());
}

int set_level(sd_bus*, const char*, const char*, const char* property, sd_bus_message* value, void*,
              sd_bus_error* error) {
  const char* name = nullptr;
  const int r = sd_bus_message_read(value, "s", &name);
  if (r < 0) return r;
  const int priority = core::parse_priority(name);
  if (priority < 0) {
    return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                             "unknown log level (want emerg, alert, crit, err, warning, notice, "
                             "info or debug)");
  }
  if (!caller_is_privileged(value)) return refuse(value, property, error);
  io::set_log_max_priority(priority);
  io::log_notice("log level set to " + std::string(core::priority_name(priority)));
  return 0;
}

int get_target(sd_bus*, const char*, const char*, const char*, sd_bus_message* reply, void*,
               sd_bus_error*) {
  return sd_bus_message_append(reply, "s", std::string(io::to_string(io::log_target())).c_str());
}

int set_target(sd_bus*, const char*, const char*, const char* property, sd_bus_message* value,
               void*, sd_bus_error* error) {
  const char* name = nullptr;
  const int r = sd_bus_message_read(value, "s", &name);
  if (r < 0) return r;
  const auto target = io::parse_log_target(name);
  if (!target) {
    return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                             "unknown log target (want auto, journal, console, console-prefixed "
                             "or null)");
  }
  if (!caller_is_privileged(value)) return refuse(value, property, error);
  io::set_log_target(*target);
  io::log_notice("log target set to " + std::string(io::to_string(*target)));
  return 0;
}

int get_identifier(sd_bus*, const char*, const char*, const char*, sd_bus_message* reply, void*,
                   sd_bus_error*) {
  return sd_bus_message_append(reply, "s", "dpsd");
}

// Writable properties are UNPRIVILEGED to sd-bus (else it would demand CAP_SYS_ADMIN via
// /proc); the check is ours, in the setters, on top of the bus policy file.
const sd_bus_vtable kVtable[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_WRITABLE_PROPERTY("LogLevel", "s", get_level, set_level, 0,
                             SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_WRITABLE_PROPERTY("LogTarget", "s", get_target, set_target, 0,
                             SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE | SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_PROPERTY("SyslogIdentifier", "s", get_identifier, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_VTABLE_END,
};

}  // namespace

Status export_log_control(sd_bus* bus) {
  const int r = sd_bus_add_object_vtable(bus, nullptr, kObjectPath, kInterface, kVtable, nullptr);
  if (r < 0) return Error{"cannot export " + std::string(kObjectPath) + ": " + core::errno_text(r)};
  return ok_status();
}

}  // namespace dpsd::app
