#pragma once
// The D-Bus face of dpsd: io.dpsd.Provisioning1 on the system bus (dbus/io.dpsd.Provisioning1.xml
// is the contract). A thin adapter: it reads the daemon's StatusModel, emits PropertiesChanged
// when the daemon says the model changed, and forwards Reprovision and GetConnectionInfo to the
// daemon after checking the caller (root or group dpsd, asked of the bus daemon). It runs on the
// daemon's sd-event loop; no threads.
#include <systemd/sd-event.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/expected.hpp"
#include "core/state_record.hpp"

namespace dpsd::app {

enum class ProvisioningState { Unprovisioned, Provisioning, Provisioned, Retrying, Failed };
const char* to_string(ProvisioningState state);

// What the daemon knows right now; the D-Bus properties mirror it one to one.
struct StatusModel {
  ProvisioningState state = ProvisioningState::Unprovisioned;
  std::optional<core::Assignment> assignment;  // AssignedHub, DeviceId, Substatus come from here
  std::string registration_id;
  std::string id_scope;
  std::string source;  // "dps" | "cache" | ""
  std::string last_error;
  std::uint32_t attempts = 0;
  std::uint64_t last_attempt_usec = 0;  // CLOCK_REALTIME µs, 0 when none
  std::uint64_t next_attempt_usec = 0;
  std::uint64_t provisioned_usec = 0;
  std::uint64_t certificate_not_after_usec = 0;  // X.509 only
  bool operator==(const StatusModel&) const = default;
};

// What GetConnectionInfo hands out (the one call that returns a secret).
struct ConnectionInfo {
  std::string assigned_hub;
  std::string device_id;
  std::string auth_type;      // "symmetric_key"
  std::string symmetric_key;  // the key the device uses on the hub (derived for groups)
};

// Implemented by the Daemon.
class ProvisioningControl {
 public:
  virtual ~ProvisioningControl() = default;
  virtual const StatusModel& status() const = 0;
  // Asks for a fresh registration and returns at once with the CLOCK_REALTIME µs at which it
  // runs. Calls coalesce: while a registration runs, the call joins it (its start time is
  // returned); within the minimum interval after the last caller-started registration, one
  // registration is scheduled for the end of the interval and every call returns that time.
  virtual std::uint64_t reprovision() = 0;
  // Empty when not provisioned.
  virtual std::optional<ConnectionInfo> connection_info() const = 0;
};

class BusService {
 public:
  // Connects to the system bus ($DBUS_SYSTEM_BUS_ADDRESS honoured), exports the object,
  // requests the name io.dpsd.Provisioning1, and attaches to `event`. When the bus is not there,
  // or the name is refused, or the connection is lost later, it logs the cause and keeps trying
  // in the background with backoff (app/bus_connection.hpp); every string it puts on the bus is
  // sanitized (core/text_sanitize.hpp). An error only when the service cannot exist at all.
  static Expected<std::unique_ptr<BusService>> create(sd_event* event,
                                                      ProvisioningControl& control);
  virtual ~BusService() = default;
  // The daemon calls this after every change of its StatusModel; emits PropertiesChanged for
  // exactly the properties whose values differ from what the bus last saw.
  virtual void status_changed() = 0;
};

}  // namespace dpsd::app
