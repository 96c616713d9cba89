#include "support/private_bus.hpp"

#include <grp.h>
#include <sys/stat.h>

#include <csignal>
#include <stdexcept>

#include "support/files.hpp"
#include "support/wait.hpp"

#ifndef DPSD_SOURCE_DIR
#error "DPSD_SOURCE_DIR must name the source tree (for dbus/io.dpsd.Provisioning1.conf)"
#endif

namespace dpsd::test {
namespace {

// A copy of /usr/share/dbus-1/system.conf's policy (deny by default, the bus driver open), with
// root allowed to own names because dpsd runs as root in the tests (user dpsd on a real system).
std::string bus_config(const std::filesystem::path& socket, bool include_project_policy) {
  std::string text =
      R"(<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=)" +
      socket.string() +
      R"(</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>
  <policy user="root">
    <allow own="*"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
)";
  if (include_project_policy) {
    text += "  <include>" DPSD_SOURCE_DIR "/dbus/io.dpsd.Provisioning1.conf</include>\n";
  } else {
    // No project policy: every call reaches dpsd, so only its own check stands in the way.
    text +=
        "  <policy context=\"default\">\n    <allow send_destination=\"io.dpsd.Provisioning1\"/>\n"
        "  </policy>\n";
  }
  return text + "</busconfig>\n";
}

}  // namespace

PrivateBus::PrivateBus(bool include_project_policy, bool start_now) {
  // nobody must reach the socket: the temp dir is 0700 by mkdtemp.
  ::chmod(dir_.path().c_str(), 0755);
  write_file(dir_ / "bus.conf", bus_config(dir_ / "bus.sock", include_project_policy));
  if (start_now) start();
}

std::string PrivateBus::plain_address() const {
  return "unix:path=" + (dir_ / "bus.sock").string();
}

void PrivateBus::start() {
  daemon_ = std::make_unique<Process>(
      std::vector<std::string>{"dbus-daemon", "--config-file=" + (dir_ / "bus.conf").string(),
                               "--print-address=1", "--print-pid=1", "--nofork"});
  const bool up =
      wait_until([&] { return daemon_->stdout_text().find('\n') != std::string::npos; }, 10s);
  if (!up) {
    throw std::runtime_error("dbus-daemon printed no address within 10 s: " +
                             daemon_->stderr_text());
  }
  const std::string out = daemon_->stdout_text();
  address_ = out.substr(0, out.find('\n'));
}

void PrivateBus::kill() {
  daemon_->signal(SIGKILL);
  if (!daemon_->wait_for_exit(10s)) throw std::runtime_error("dbus-daemon survived SIGKILL");
  daemon_.reset();
}

gid_t ensure_dpsd_group() {
  if (const group* g = ::getgrnam("dpsd")) return g->gr_gid;
  // ctest runs test processes in parallel: another one may win the race, so only the group's
  // existence afterwards counts, not groupadd's exit status.
  const CommandResult r = run_command({"groupadd", "--system", "dpsd"}, 10s);
  const group* g = ::getgrnam("dpsd");
  if (!g) throw std::runtime_error("group dpsd unknown after groupadd --system dpsd: " + r.err);
  return g->gr_gid;
}

}  // namespace dpsd::test
