#pragma once
// dpsd's connection to the system bus, kept alive: when dbus-daemon drops the connection (it
// restarted, or it disconnected dpsd for a message it did not like) or is not there at start,
// the connection is made again in the background with exponential backoff (1 s doubling to
// 60 s, full jitter), the object exported again and the well-known name requested again. Every
// loss and every recovery is logged. All of it runs on the daemon's one sd-event loop.
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <string>

#include "core/backoff.hpp"
#include "core/expected.hpp"
#include "io/c_ptr.hpp"
#include "io/event_loop.hpp"

namespace dpsd::app {

// Flush so that replies and PropertiesChanged queued just before shutdown still go out.
using BusPtr = io::CPtr<sd_bus, sd_bus_flush_close_unref>;
using SlotPtr = io::CPtr<sd_bus_slot, sd_bus_slot_unref>;

class BusConnection {
 public:
  // Exports the objects on a fresh connection (called before the name is requested, so a client
  // that sees the name also finds the object); the returned slot lives as long as the connection.
  using Export = std::function<Expected<SlotPtr>(sd_bus*)>;
  // Called each time the name is owned again after a reconnection.
  using Reconnected = std::function<void()>;

  BusConnection(sd_event* event, std::string name, Export export_objects, Reconnected reconnected);
  BusConnection(const BusConnection&) = delete;
  BusConnection& operator=(const BusConnection&) = delete;
  ~BusConnection();

  // The first connection, synchronous: when the bus is up, the name is owned on return (dpsd
  // sends READY=1 after this). On failure the reason is logged and reconnection goes on in the
  // background; the return value says what failed, for the caller's information.
  Status start();

  // The connection, when it is up and owns the name; nullptr otherwise.
  sd_bus* bus() const { return ready_ ? bus_.get() : nullptr; }

 private:
  Status open(bool first);
  void on_name_result(int r, const std::string& detail);
  std::string name_error(int r, const std::string& detail) const;
  void lost(const std::string& reason);
  void drop();
  static int on_disconnected(sd_bus_message* m, void* userdata, sd_bus_error* error);
  static int on_request_name(sd_bus_message* reply, void* userdata, sd_bus_error* error);

  sd_event* event_;
  std::string name_;
  Export export_;
  Reconnected reconnected_;
  core::Backoff backoff_{std::chrono::seconds(1), std::chrono::seconds(60)};
  std::mt19937_64 random_{std::random_device{}()};
  io::Timer retry_;
  bool ready_ = false;
  bool ever_connected_ = false;  // "connected" the first time, "reconnected" after
  bool retrying_ = false;        // a failure was logged; the next ones are routine
  // Declared last so that they go first: the slots and the bus before anything they call into.
  BusPtr bus_;
  SlotPtr disconnect_slot_;
  SlotPtr object_slot_;
  SlotPtr name_slot_;
};

}  // namespace dpsd::app
