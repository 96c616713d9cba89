#pragma once
// dpsctl's view of io.dpsd.Provisioning1, on sdbus-c++ with the proxy generated from the
// interface XML (dpsd_proxy.hpp). Synchronous calls, plus a wait loop driven by signals
// (PropertiesChanged from the owner of the name, NameOwnerChanged), never polling dpsd. One
// thread: the loop processes the connection itself (processPendingRequest, then poll() on
// getEventLoopPollData's fd until the deadline), so nothing runs behind its back.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "bus_errors.hpp"
#include "dpsd_proxy.hpp"

namespace dpsctl {

class Client {
 public:
  // Connects to the system bus ($DBUS_SYSTEM_BUS_ADDRESS honoured). Throws Failure.
  Client();
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

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
  // `present` false while dpsd is not on the bus) or `deadline` passes (returns false). dpsd
  // going away and coming back (a restart) is a change like any other; so is the bus going
  // away: the wait connects again and goes on with whoever owns the name then.
  using Predicate = std::function<bool(const Properties& props, bool present)>;
  using Deadline = std::optional<std::chrono::steady_clock::time_point>;
  bool wait(const Properties& initial, bool present, const Predicate& done, Deadline deadline);

 private:
  struct Link;  // one connection to the bus and what hangs on it

  void open_link();  // throws sdbus::Error
  void subscribe();  // throws sdbus::Error
  void on_owner(const std::string& owner);
  void on_properties(const std::string& sender, const Properties& changed);
  bool process();                   // one request; false when idle or the link broke
  bool reconnect();                 // false while the bus is not back
  void refresh(Deadline deadline);  // GetAll after the owner changed
  void lose_link();
  bool wait_for_io(Deadline deadline, std::chrono::steady_clock::time_point retry_at);

  std::unique_ptr<Link> link_;
  // Unique name of dpsd's connection: signals from anyone else are ignored (any local user may
  // send a PropertiesChanged signal on the system bus).
  std::string owner_;
  Properties props_;
  bool present_ = false;
  bool changed_ = false;
  bool refresh_ = false;
  std::chrono::milliseconds reconnect_delay_{0};
};

}  // namespace dpsctl
