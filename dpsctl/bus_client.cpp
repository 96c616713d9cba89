#include "bus_client.hpp"

#include <cerrno>
#include <cstring>

namespace dpsctl {
namespace {

constexpr const char* kBusName = "io.dpsd.Provisioning1";
constexpr const char* kObjectPath = "/io/dpsd/Provisioning1";
constexpr const char* kInterface = "io.dpsd.Provisioning1";

// Frees the error and the reply of one synchronous call, whatever path the caller takes.
struct Call {
  sd_bus_error error = SD_BUS_ERROR_NULL;
  sd_bus_message* reply = nullptr;
  ~Call() {
    sd_bus_error_free(&error);
    sd_bus_message_unref(reply);
  }
};

Failure call_failure(const sd_bus_error& error, int r, const std::string& what) {
  if (sd_bus_error_has_name(&error, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
      sd_bus_error_has_name(&error, SD_BUS_ERROR_NAME_HAS_NO_OWNER)) {
    return {kNotRunning,
            "dpsd is not running (nobody owns " + std::string(kBusName) + " on the system bus)"};
  }
  if (sd_bus_error_has_name(&error, SD_BUS_ERROR_ACCESS_DENIED)) {
    return {kAccessDenied, what + ": access denied (root or group dpsd only)" +
                               (error.message ? std::string(": ") + error.message : "")};
  }
  return {kFailed, what + ": " + (error.message ? std::string(error.message) : std::strerror(-r)) +
                       (error.name ? " (" + std::string(error.name) + ")" : "")};
}

void check(int r, const char* what) {
  if (r < 0) throw Failure{kFailed, std::string(what) + ": " + std::strerror(-r)};
}

// a{sv} into `out`, keeping the types dpsd uses; values of other types are skipped.
void read_dict(sd_bus_message* m, Properties& out) {
  check(sd_bus_message_enter_container(m, 'a', "{sv}"), "bad reply");
  int r;
  while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
    const char* key = nullptr;
    check(sd_bus_message_read(m, "s", &key), "bad reply");
    char type = 0;
    const char* contents = nullptr;
    check(sd_bus_message_peek_type(m, &type, &contents), "bad reply");
    const std::string sig = contents ? contents : "";
    check(sd_bus_message_enter_container(m, 'v', sig.c_str()), "bad reply");
    if (sig == "s") {
      const char* s = nullptr;
      check(sd_bus_message_read(m, "s", &s), "bad reply");
      out[key] = std::string(s);
    } else if (sig == "u") {
      std::uint32_t u = 0;
      check(sd_bus_message_read(m, "u", &u), "bad reply");
      out[key] = u;
    } else if (sig == "t") {
      std::uint64_t t = 0;
      check(sd_bus_message_read(m, "t", &t), "bad reply");
      out[key] = t;
    } else if (sig == "x") {
      std::int64_t x = 0;
      check(sd_bus_message_read(m, "x", &x), "bad reply");
      out[key] = x;
    } else if (sig == "b") {
      int b = 0;
      check(sd_bus_message_read(m, "b", &b), "bad reply");
      out[key] = b != 0;
    } else {
      check(sd_bus_message_skip(m, sig.c_str()), "bad reply");
    }
    check(sd_bus_message_exit_container(m), "bad reply");
    check(sd_bus_message_exit_container(m), "bad reply");
  }
  check(r, "bad reply");
  check(sd_bus_message_exit_container(m), "bad reply");
}

}  // namespace

std::string as_string(const Properties& p, const std::string& name) {
  const auto it = p.find(name);
  if (it == p.end()) return {};
  if (const auto* s = std::get_if<std::string>(&it->second)) return *s;
  return {};
}

std::uint64_t as_u64(const Properties& p, const std::string& name) {
  const auto it = p.find(name);
  if (it == p.end()) return 0;
  if (const auto* t = std::get_if<std::uint64_t>(&it->second)) return *t;
  if (const auto* u = std::get_if<std::uint32_t>(&it->second)) return *u;
  return 0;
}

Client::Client() {
  sd_bus* raw = nullptr;
  const int r = sd_bus_open_system(&raw);
  if (r < 0) {
    throw Failure{kNotRunning,
                  std::string("cannot connect to the system bus: ") + std::strerror(-r)};
  }
  bus_.reset(raw);
}

Properties Client::get_all() {
  Call c;
  const int r =
      sd_bus_call_method(bus_.get(), kBusName, kObjectPath, "org.freedesktop.DBus.Properties",
                         "GetAll", &c.error, &c.reply, "s", kInterface);
  if (r < 0) throw call_failure(c.error, r, "cannot read dpsd's properties");
  Properties props;
  read_dict(c.reply, props);
  return props;
}

std::uint64_t Client::reprovision() {
  Call c;
  const int r = sd_bus_call_method(bus_.get(), kBusName, kObjectPath, kInterface, "Reprovision",
                                   &c.error, &c.reply, "");
  if (r < 0) throw call_failure(c.error, r, "Reprovision");
  std::uint64_t start_usec = 0;
  check(sd_bus_message_read(c.reply, "t", &start_usec), "bad Reprovision reply");
  return start_usec;
}

Properties Client::connection_info() {
  Call c;
  const int r = sd_bus_call_method(bus_.get(), kBusName, kObjectPath, kInterface,
                                   "GetConnectionInfo", &c.error, &c.reply, "");
  if (r < 0) throw call_failure(c.error, r, "GetConnectionInfo");
  Properties info;
  read_dict(c.reply, info);
  return info;
}

std::string Client::current_owner() {
  Call c;
  const int r =
      sd_bus_call_method(bus_.get(), "org.freedesktop.DBus", "/org/freedesktop/DBus",
                         "org.freedesktop.DBus", "GetNameOwner", &c.error, &c.reply, "s", kBusName);
  if (r < 0) {
    if (sd_bus_error_has_name(&c.error, SD_BUS_ERROR_NAME_HAS_NO_OWNER)) return {};
    throw call_failure(c.error, r, "GetNameOwner");
  }
  const char* owner = nullptr;
  check(sd_bus_message_read(c.reply, "s", &owner), "bad GetNameOwner reply");
  return owner;
}

void Client::watch() {
  sd_bus_slot* slot = nullptr;
  const std::string props_rule = std::string(
                                     "type='signal',interface='org.freedesktop.DBus.Properties',"
                                     "member='PropertiesChanged',path='") +
                                 kObjectPath + "',arg0='" + kInterface + "'";
  check(sd_bus_add_match(bus_.get(), &slot, props_rule.c_str(), on_properties_changed, this),
        "cannot watch dpsd's properties");
  props_slot_.reset(slot);
  const std::string owner_rule =
      std::string(
          "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
          "member='NameOwnerChanged',arg0='") +
      kBusName + "'";
  check(sd_bus_add_match(bus_.get(), &slot, owner_rule.c_str(), on_owner_changed, this),
        "cannot watch for dpsd on the bus");
  owner_slot_.reset(slot);
  owner_ = current_owner();
}

int Client::on_properties_changed(sd_bus_message* m, void* userdata, sd_bus_error*) {
  auto& self = *static_cast<Client*>(userdata);
  const char* sender = sd_bus_message_get_sender(m);
  if (!sender || self.owner_.empty() || self.owner_ != sender) return 0;
  try {
    const char* iface = nullptr;
    check(sd_bus_message_read(m, "s", &iface), "bad PropertiesChanged");
    read_dict(m, self.props_);
    self.present_ = true;
    self.changed_ = true;
  } catch (const Failure& f) {
    self.error_ = f;
  }
  return 0;
}

int Client::on_owner_changed(sd_bus_message* m, void* userdata, sd_bus_error*) {
  auto& self = *static_cast<Client*>(userdata);
  const char *name = nullptr, *old_owner = nullptr, *new_owner = nullptr;
  if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0) return 0;
  self.owner_ = new_owner ? new_owner : "";
  self.changed_ = true;
  if (self.owner_.empty()) {
    self.present_ = false;
    return 0;
  }
  // dpsd (re)appeared: read its state afresh. dpsd exports the object before it takes the
  // name, so GetAll finds it.
  try {
    self.props_ = self.get_all();
    self.present_ = true;
  } catch (const Failure& f) {
    self.error_ = f;
  }
  return 0;
}

bool Client::wait(const Properties& initial, bool present, const Predicate& done,
                  std::optional<std::chrono::steady_clock::time_point> deadline) {
  props_ = initial;
  present_ = present;
  if (done(props_, present_)) return true;
  for (;;) {
    const int r = sd_bus_process(bus_.get(), nullptr);
    if (r < 0) throw Failure{kFailed, std::string("lost the system bus: ") + std::strerror(-r)};
    if (error_) throw *error_;
    if (changed_) {
      changed_ = false;
      if (done(props_, present_)) return true;
    }
    if (r > 0) continue;  // more may be queued
    std::uint64_t timeout_usec = UINT64_MAX;
    if (deadline) {
      const auto now = std::chrono::steady_clock::now();
      if (now >= *deadline) return false;
      timeout_usec = static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(*deadline - now).count());
    }
    const int w = sd_bus_wait(bus_.get(), timeout_usec);
    if (w < 0 && w != -EINTR) {
      throw Failure{kFailed, std::string("lost the system bus: ") + std::strerror(-w)};
    }
  }
}

}  // namespace dpsctl
