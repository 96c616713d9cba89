// Reconnection on raw sd-bus. sd-bus tells a client that its connection is gone by synthesizing
// the signal org.freedesktop.DBus.Local.Disconnected after it has failed every pending call
// (sd_bus_set_exit_on_disconnect(3), sd-bus's process_closing); with exit-on-disconnect off,
// nothing else happens, so without this file dpsd would stay off the bus for good.
#include "app/bus_connection.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/errno_text.hpp"
#include "core/text_sanitize.hpp"
#include "io/log.hpp"

namespace dpsd::app {
namespace {

using core::errno_text;

constexpr const char* kLocal = "org.freedesktop.DBus.Local";

// DBus RequestName reply codes (D-Bus specification, "org.freedesktop.DBus.RequestName").
constexpr std::uint32_t kPrimaryOwner = 1;
constexpr std::uint32_t kAlreadyOwner = 4;

std::string seconds_text(std::chrono::milliseconds delay) {
  char buf[32];
  (void)std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(delay.count()) / 1000.0);
  return buf;
}

}  // namespace

BusConnection::BusConnection(sd_event* event, std::string name, Export export_objects,
                             Reconnected reconnected)
    : event_(event),
      name_(std::move(name)),
      export_(std::move(export_objects)),
      reconnected_(std::move(reconnected)),
      retry_(event, [this] {
        if (const Status opened = open(/*first=*/false); !opened) lost("D-Bus: " + opened.error());
      }) {}

BusConnection::~BusConnection() {
  drop();
}

Status BusConnection::start() {
  Status opened = open(/*first=*/true);
  if (!opened) lost("D-Bus: " + opened.error());
  return opened;
}

Status BusConnection::open(bool first) {
  drop();
  sd_bus* raw = nullptr;
  // sd_bus_open_system honours $DBUS_SYSTEM_BUS_ADDRESS, which the tests rely on.
  int r = sd_bus_open_system(&raw);
  if (r < 0) return Error{"cannot connect to the system bus: " + errno_text(r)};
  bus_.reset(raw);
  // A lost bus must never end dpsd's loop: provisioning goes on, and we reconnect.
  r = sd_bus_set_exit_on_disconnect(bus_.get(), 0);
  if (r < 0) return Error{"cannot configure the bus connection: " + errno_text(r)};

  // A filter rather than a match: it sees the synthesized Disconnected without an AddMatch
  // round trip to the bus daemon (which would block here, or could itself fail).
  sd_bus_slot* slot = nullptr;
  r = sd_bus_add_filter(bus_.get(), &slot, on_disconnected, this);
  if (r < 0) return Error{"cannot watch the bus connection: " + errno_text(r)};
  disconnect_slot_.reset(slot);

  auto exported = export_(bus_.get());
  if (!exported) return Error{exported.error()};
  object_slot_ = std::move(exported.value());

  r = sd_bus_attach_event(bus_.get(), event_, SD_EVENT_PRIORITY_NORMAL);
  if (r < 0) return Error{"cannot attach the bus to the event loop: " + errno_text(r)};

  if (!first) {
    // Asynchronous: a bus daemon that is still starting must not stall provisioning (or the
    // watchdog) on this loop. on_request_name finishes the job.
    r = sd_bus_request_name_async(bus_.get(), &slot, name_.c_str(), 0, on_request_name, this);
    if (r < 0) return Error{"cannot request " + name_ + ": " + errno_text(r)};
    name_slot_.reset(slot);
    return ok_status();
  }
  // At start, synchronous: READY=1 follows, and it promises that the name is owned.
  r = sd_bus_request_name(bus_.get(), name_.c_str(), 0);
  if (r < 0) return Error{name_error(r, "")};
  ready_ = true;
  ever_connected_ = true;
  return ok_status();
}

std::string BusConnection::name_error(int r, const std::string& detail) const {
  if (r == -EEXIST) return "name " + name_ + " is taken";
  if (r == -EACCES || r == -EPERM) {
    return "the bus policy does not allow this user to own " + name_ +
           " (is dbus/io.dpsd.Provisioning1.conf installed?)";
  }
  return "cannot own " + name_ + ": " + (detail.empty() ? errno_text(r) : detail);
}

void BusConnection::on_name_result(int r, const std::string& detail) {
  if (r >= 0) {
    ready_ = true;
    backoff_.reset();
    io::log_notice(std::string("D-Bus: ") + (ever_connected_ ? "reconnected" : "connected") +
                   ", name " + name_ + " acquired");
    ever_connected_ = true;
    retrying_ = false;
    if (reconnected_) reconnected_();
    return;
  }
  lost("D-Bus: " + name_error(r, detail));
}

int BusConnection::on_request_name(sd_bus_message* reply, void* userdata, sd_bus_error*) {
  auto& self = *static_cast<BusConnection*>(userdata);
  if (sd_bus_message_is_method_error(reply, nullptr)) {
    const sd_bus_error* error = sd_bus_message_get_error(reply);
    const int errno_value = sd_bus_message_get_errno(reply);
    self.on_name_result(errno_value > 0 ? -errno_value : -EIO,
                        core::sanitize_text(error && error->message ? error->message : ""));
    return 0;
  }
  std::uint32_t code = 0;
  const int r = sd_bus_message_read(reply, "u", &code);
  if (r < 0) {
    self.on_name_result(r, "bad RequestName reply");
  } else {
    // Without a queueing flag, anything but owning the name means someone else has it.
    self.on_name_result(code == kPrimaryOwner || code == kAlreadyOwner ? 0 : -EEXIST, "");
  }
  return 0;
}

int BusConnection::on_disconnected(sd_bus_message* m, void* userdata, sd_bus_error*) {
  // The Local interface is reserved: dbus-daemon does not relay it from peers, and sd-bus
  // synthesizes Disconnected only after it closed the connection; both are checked anyway.
  if (sd_bus_message_is_signal(m, kLocal, "Disconnected") <= 0 ||
      sd_bus_is_open(sd_bus_message_get_bus(m)) > 0) {
    return 0;
  }
  static_cast<BusConnection*>(userdata)->lost("D-Bus connection lost");
  return 0;
}

void BusConnection::lost(const std::string& reason) {
  ready_ = false;
  // One loss, one retry: a failed pending call and the Disconnected after it are one event.
  if (retry_.armed()) return;
  const auto delay = backoff_.next(random_());
  // The first failure in a row is a warning; the retries after it are routine.
  io::log(retrying_ ? core::LogLevel::Info : core::LogLevel::Warning,
          reason + "; reconnecting in " + seconds_text(delay));
  retrying_ = true;
  // Not dropped here: we may be inside one of this bus's own callbacks. open() drops it.
  retry_.arm(delay);
}

void BusConnection::drop() {
  ready_ = false;
  name_slot_.reset();
  object_slot_.reset();
  disconnect_slot_.reset();
  if (bus_) {
    (void)sd_bus_detach_event(bus_.get());
    bus_.reset();
  }
}

}  // namespace dpsd::app
