#pragma once
// Who called a privileged D-Bus method, as the bus daemon reports it (GetConnectionCredentials),
// and whether that caller may use Reprovision and GetConnectionInfo: root, or a member of group
// dpsd. Asked of the bus, never read from /proc/<pid> (racy, and hidden under
// ProtectProc=invisible).
#include <sys/types.h>
#include <systemd/sd-bus.h>

#include <vector>

namespace dpsd::app {

struct CallerCredentials {
  bool have_uid = false;
  uid_t uid = 0;
  bool have_groups = false;
  std::vector<gid_t> groups;
};

// Reads the a{sv} reply of org.freedesktop.DBus.GetConnectionCredentials; a negative errno on a
// malformed reply.
int parse_credentials(sd_bus_message* reply, CallerCredentials& creds);

// Root, or a member of `group` (looked up per call: the group may be created after dpsd started).
bool is_privileged(const CallerCredentials& creds, const char* group);

}  // namespace dpsd::app
