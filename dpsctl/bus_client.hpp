#pragma once
// dpsctl's view of io.dpsd.Provisioning1, on raw sd-bus (libsystemd is already a dependency of
// dpsd; no second D-Bus library). Synchronous calls plus a wait loop driven by signals: watching
// PropertiesChanged and NameOwnerChanged, never polling.
#include <systemd/sd-bus.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>

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

using Value = std::variant<std::string, std::uint32_t, std::uint64_t, bool, std::int64_t>;
using Properties = std::map<std::string, Value>;

std::string as_string(const Properties& p, const std::string& name);
std::uint64_t as_u64(const Properties& p, const std::string& name);

// A failure with the exit code it maps to and a message naming the cause.
struct Failure {
  int code;
  std::string message;
};

struct BusDeleter {
  void operator()(sd_bus* bus) const { sd_bus_flush_close_unref(bus); }
};
struct SlotDeleter {
  void operator()(sd_bus_slot* slot) const { sd_bus_slot_unref(slot); }
};

class Client {
 public:
  // Connects to the system bus ($DBUS_SYSTEM_BUS_ADDRESS honoured). Throws Failure.
  Client();

  // GetAll; Failure{kNotRunning} when nobody owns the name.
  Properties get_all();
  // Reprovision() → the CLOCK_REALTIME µs at which dpsd runs the registration (now, or later
  // when calls are rate-limited); Failure{kAccessDenied} when refused.
  std::uint64_t reprovision();
  // GetConnectionInfo() → a{sv}.
  Properties connection_info();

  // Subscribes to PropertiesChanged of dpsd's object and NameOwnerChanged of its name. Call
  // before reading the state the wait starts from, so no change can fall between the two.
  void watch();
  // Runs until `done` returns true (called after each change with the merged properties;
  // `present` false while dpsd is not on the bus) or `deadline` passes (returns false).
  using Predicate = std::function<bool(const Properties& props, bool present)>;
  bool wait(const Properties& initial, bool present, const Predicate& done,
            std::optional<std::chrono::steady_clock::time_point> deadline);

 private:
  static int on_properties_changed(sd_bus_message* m, void* userdata, sd_bus_error* error);
  static int on_owner_changed(sd_bus_message* m, void* userdata, sd_bus_error* error);
  std::string current_owner();

  std::unique_ptr<sd_bus, BusDeleter> bus_;
  std::unique_ptr<sd_bus_slot, SlotDeleter> props_slot_;
  std::unique_ptr<sd_bus_slot, SlotDeleter> owner_slot_;
  // Unique name of dpsd's connection: signals from anyone else are ignored (any local user may
  // send a PropertiesChanged signal on the system bus).
  std::string owner_;
  Properties props_;
  bool present_ = false;
  bool changed_ = false;
  std::optional<Failure> error_;
};

}  // namespace dpsctl
