#pragma once
// A private dbus-daemon that behaves like the system bus (deny by default, the bus driver open,
// root may own names), listening on a Unix socket in a temp dir of its own, so parallel tests
// never share or collide on an address. Stopped by PID with the object (support/process.hpp).
#include <sys/types.h>

#include <memory>
#include <string>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace dpsd::test {

class PrivateBus {
 public:
  // include_project_policy: the bus reads dbus/io.dpsd.Provisioning1.conf, as an installed
  // system bus does. Without it every call may reach io.dpsd.Provisioning1, so only dpsd's own
  // check of the caller stands in the way. start_now false: create the config and the address
  // now, start the daemon later (a bus that comes up after dpsd).
  explicit PrivateBus(bool include_project_policy = true, bool start_now = true);

  // The address printed by dbus-daemon, with the guid of this run of it.
  const std::string& address() const { return address_; }
  // The socket alone, as a system's DBUS_SYSTEM_BUS_ADDRESS names it: valid across restarts.
  std::string plain_address() const;
  pid_t pid() const { return daemon_ ? daemon_->pid() : -1; }

  // Starts dbus-daemon (again, at the same socket path) and waits, bounded, for its address.
  void start();
  // As a crash: SIGKILL, so the socket file stays behind and nobody says goodbye.
  void kill();

 private:
  TempDir dir_{"dpsd-bus"};
  std::unique_ptr<Process> daemon_;
  std::string address_;
};

// The gid of group dpsd (privileged on io.dpsd.Provisioning1), created as a system group when
// missing. Call it before a bus reads a policy that names the group.
gid_t ensure_dpsd_group();

}  // namespace dpsd::test
