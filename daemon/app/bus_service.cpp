// io.dpsd.Provisioning1 on raw sd-bus. sd-bus attaches to sd-event natively
// (sd_bus_attach_event), so the bus shares the daemon's one loop without the poll-data dance that
// sdbus-c++ 1.2.0 would need, and without a second D-Bus library in the process.
#include "app/bus_service.hpp"

#include <grp.h>
#include <pwd.h>
#include <systemd/sd-bus.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include "io/log.hpp"

namespace dpsd::app {
namespace {

constexpr const char* kBusName = "io.dpsd.Provisioning1";
constexpr const char* kObjectPath = "/io/dpsd/Provisioning1";
constexpr const char* kInterface = "io.dpsd.Provisioning1";
constexpr const char* kPrivilegedGroup = "dpsd";
constexpr const char* kAccessDenied = "org.freedesktop.DBus.Error.AccessDenied";
constexpr const char* kNotProvisioned = "io.dpsd.Provisioning1.Error.NotProvisioned";

struct BusDeleter {
  // Flush so that replies and PropertiesChanged queued just before shutdown still go out.
  void operator()(sd_bus* bus) const { sd_bus_flush_close_unref(bus); }
};
using BusPtr = std::unique_ptr<sd_bus, BusDeleter>;

struct SlotDeleter {
  void operator()(sd_bus_slot* slot) const { sd_bus_slot_unref(slot); }
};
using SlotPtr = std::unique_ptr<sd_bus_slot, SlotDeleter>;

struct MessageDeleter {
  void operator()(sd_bus_message* m) const { sd_bus_message_unref(m); }
};
using MessagePtr = std::unique_ptr<sd_bus_message, MessageDeleter>;

using Value = std::variant<std::string, std::uint32_t, std::uint64_t>;

// The one place that maps the model to property values: getters and change detection both use
// it, so a property can never be emitted with a value its getter would not return.
struct Property {
  const char* name;
  Value (*get)(const StatusModel&);
};

const std::string& hub(const StatusModel& s) {
  static const std::string empty;
  return s.assignment ? s.assignment->assigned_hub : empty;
}

const Property kProperties[] = {
    {"State", [](const StatusModel& s) -> Value { return std::string(to_string(s.state)); }},
    {"AssignedHub", [](const StatusModel& s) -> Value { return hub(s); }},
    {"DeviceId",
     [](const StatusModel& s) -> Value {
       return s.assignment ? s.assignment->device_id : std::string();
     }},
    {"RegistrationId", [](const StatusModel& s) -> Value { return s.registration_id; }},
    {"IdScope", [](const StatusModel& s) -> Value { return s.id_scope; }},
    {"Substatus",
     [](const StatusModel& s) -> Value {
       return s.assignment ? s.assignment->substatus : std::string();
     }},
    {"Source", [](const StatusModel& s) -> Value { return s.source; }},
    {"LastError", [](const StatusModel& s) -> Value { return s.last_error; }},
    {"Attempts", [](const StatusModel& s) -> Value { return s.attempts; }},
    {"LastAttemptUSec", [](const StatusModel& s) -> Value { return s.last_attempt_usec; }},
    {"NextAttemptUSec", [](const StatusModel& s) -> Value { return s.next_attempt_usec; }},
    {"ProvisionedUSec", [](const StatusModel& s) -> Value { return s.provisioned_usec; }},
    {"CertificateNotAfterUSec",
     [](const StatusModel& s) -> Value { return s.certificate_not_after_usec; }},
};

const Property* find_property(const char* name) {
  for (const auto& p : kProperties) {
    if (std::strcmp(p.name, name) == 0) return &p;
  }
  return nullptr;
}

std::string errno_text(int r) {
  return std::strerror(r < 0 ? -r : r);
}

// What the bus daemon says about the caller. Asked of the bus, never read from /proc/<pid>
// (racy, and hidden under ProtectProc=invisible).
struct CallerCredentials {
  bool have_uid = false;
  uid_t uid = 0;
  bool have_groups = false;
  std::vector<gid_t> groups;
};

int parse_credentials(sd_bus_message* reply, CallerCredentials& creds) {
  int r = sd_bus_message_enter_container(reply, 'a', "{sv}");
  if (r < 0) return r;
  while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
    const char* key = nullptr;
    if ((r = sd_bus_message_read(reply, "s", &key)) < 0) return r;
    if (std::strcmp(key, "UnixUserID") == 0) {
      std::uint32_t uid = 0;
      if ((r = sd_bus_message_read(reply, "v", "u", &uid)) < 0) return r;
      creds.uid = uid;
      creds.have_uid = true;
    } else if (std::strcmp(key, "UnixGroupIDs") == 0) {
      if ((r = sd_bus_message_enter_container(reply, 'v', "au")) < 0) return r;
      const void* data = nullptr;
      std::size_t size = 0;
      if ((r = sd_bus_message_read_array(reply, 'u', &data, &size)) < 0) return r;
      const auto* gids = static_cast<const std::uint32_t*>(data);
      creds.groups.assign(gids, gids + size / sizeof(std::uint32_t));
      creds.have_groups = true;
      if ((r = sd_bus_message_exit_container(reply)) < 0) return r;
    } else if ((r = sd_bus_message_skip(reply, "v")) < 0) {
      return r;
    }
    if ((r = sd_bus_message_exit_container(reply)) < 0) return r;
  }
  if (r < 0) return r;
  return sd_bus_message_exit_container(reply);
}

std::optional<gid_t> privileged_gid() {
  // Looked up per call, not cached: the group may be created after dpsd started.
  group grp{};
  group* result = nullptr;
  std::vector<char> buf(16384);
  if (getgrnam_r(kPrivilegedGroup, &grp, buf.data(), buf.size(), &result) != 0 || !result) {
    return std::nullopt;
  }
  return result->gr_gid;
}

// Fallback for a bus daemon that does not report UnixGroupIDs: the uid's groups per NSS.
std::vector<gid_t> groups_of_uid(uid_t uid) {
  passwd pw{};
  passwd* result = nullptr;
  std::vector<char> buf(16384);
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &result) != 0 || !result) return {};
  int n = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  if (getgrouplist(result->pw_name, result->pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    if (getgrouplist(result->pw_name, result->pw_gid, groups.data(), &n) < 0) return {};
  }
  groups.resize(static_cast<std::size_t>(n));
  return groups;
}

bool is_privileged(const CallerCredentials& creds) {
  if (!creds.have_uid) return false;
  if (creds.uid == 0) return true;
  const auto gid = privileged_gid();
  if (!gid) return false;
  const std::vector<gid_t> groups = creds.have_groups ? creds.groups : groups_of_uid(creds.uid);
  return std::find(groups.begin(), groups.end(), *gid) != groups.end();
}

class SdBusService final : public BusService {
 public:
  SdBusService(ProvisioningControl& control) : control_(control), seen_(control.status()) {}

  Status start(sd_event* event) {
    sd_bus* raw = nullptr;
    // sd_bus_open_system honours $DBUS_SYSTEM_BUS_ADDRESS, which the tests rely on.
    int r = sd_bus_open_system(&raw);
    if (r < 0) return Error{"cannot connect to the system bus: " + errno_text(r)};
    bus_.reset(raw);

    sd_bus_slot* slot = nullptr;
    r = sd_bus_add_object_vtable(bus_.get(), &slot, kObjectPath, kInterface, kVtable, this);
    if (r < 0) return Error{"cannot export " + std::string(kObjectPath) + ": " + errno_text(r)};
    vtable_slot_.reset(slot);

    // Export first, then take the name: a client that sees the name also finds the object.
    r = sd_bus_request_name(bus_.get(), kBusName, 0);
    if (r == -EEXIST) return Error{"name " + std::string(kBusName) + " is taken"};
    if (r == -EACCES || r == -EPERM) {
      return Error{"the bus policy does not allow this user to own " + std::string(kBusName) +
                   " (is dbus/io.dpsd.Provisioning1.conf installed?)"};
    }
    if (r < 0) return Error{"cannot own " + std::string(kBusName) + ": " + errno_text(r)};

    r = sd_bus_attach_event(bus_.get(), event, SD_EVENT_PRIORITY_NORMAL);
    if (r < 0) return Error{"cannot attach the bus to the event loop: " + errno_text(r)};
    return ok_status();
  }

  void status_changed() override {
    const StatusModel& now = control_.status();
    std::vector<const char*> changed;
    for (const auto& p : kProperties) {
      if (p.get(now) != p.get(seen_)) changed.push_back(p.name);
    }
    seen_ = now;
    if (changed.empty()) return;
    if (sd_bus_is_open(bus_.get()) <= 0) {
      // The bus went away (dbus-daemon stopped, usually at shutdown). dpsd keeps provisioning
      // without it; say so once instead of at every change.
      if (!disconnect_logged_) {
        io::log_warning("D-Bus: the system bus connection is gone; status only in logs and files");
        disconnect_logged_ = true;
      }
      return;
    }
    changed.push_back(nullptr);
    // The getters read the model again, so the signal carries exactly what Get would return.
    const int r = sd_bus_emit_properties_changed_strv(bus_.get(), kObjectPath, kInterface,
                                                      const_cast<char**>(changed.data()));
    if (r < 0) io::log_warning("D-Bus: cannot emit PropertiesChanged: " + errno_text(r));
  }

 private:
  enum class Call { Reprovision, GetConnectionInfo };

  // One privileged call waiting for the bus daemon's answer about its sender. Owned by the
  // floating slot of the pending GetConnectionCredentials call: freed when that slot goes.
  struct PendingCall {
    SdBusService* service;
    MessagePtr call;
    Call kind;
  };

  static int get_property(sd_bus*, const char*, const char*, const char* property,
                          sd_bus_message* reply, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<SdBusService*>(userdata);
    const Property* p = find_property(property);
    if (!p) return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "%s", property);
    const Value v = p->get(self->control_.status());
    if (const auto* s = std::get_if<std::string>(&v)) {
      return sd_bus_message_append(reply, "s", s->c_str());
    }
    if (const auto* u = std::get_if<std::uint32_t>(&v))
      return sd_bus_message_append(reply, "u", *u);
    return sd_bus_message_append(reply, "t", std::get<std::uint64_t>(v));
  }

  static int method_reprovision(sd_bus_message* m, void* userdata, sd_bus_error*) {
    return static_cast<SdBusService*>(userdata)->authorize(m, Call::Reprovision);
  }
  static int method_connection_info(sd_bus_message* m, void* userdata, sd_bus_error*) {
    return static_cast<SdBusService*>(userdata)->authorize(m, Call::GetConnectionInfo);
  }

  // Asks the bus daemon who the sender is, asynchronously so that a slow bus never stalls the
  // provisioning on the same loop; the method reply is sent from on_credentials.
  int authorize(sd_bus_message* m, Call kind) {
    auto pending =
        std::make_unique<PendingCall>(PendingCall{this, MessagePtr(sd_bus_message_ref(m)), kind});
    sd_bus_slot* slot = nullptr;
    int r =
        sd_bus_call_method_async(bus_.get(), &slot, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                 "org.freedesktop.DBus", "GetConnectionCredentials", on_credentials,
                                 pending.get(), "s", sd_bus_message_get_sender(m));
    if (r < 0) return r;  // sd-bus replies with an error derived from r
    (void)sd_bus_slot_set_destroy_callback(slot, [](void* p) {
      const std::unique_ptr<PendingCall> owned(static_cast<PendingCall*>(p));
    });
    // Now owned by the slot: its destroy callback above frees it.
    [[maybe_unused]] PendingCall* handed_over = pending.release();
    (void)sd_bus_slot_set_floating(slot, 1);
    sd_bus_slot_unref(slot);  // the floating slot is kept by the bus until the reply came
    return 1;
  }

  static int on_credentials(sd_bus_message* reply, void* userdata, sd_bus_error*) {
    auto& pending = *static_cast<PendingCall*>(userdata);
    SdBusService& self = *pending.service;
    sd_bus_message* call = pending.call.get();
    const char* method = pending.kind == Call::Reprovision ? "Reprovision" : "GetConnectionInfo";

    CallerCredentials creds;
    if (sd_bus_message_is_method_error(reply, nullptr)) {
      io::log_warning(std::string("D-Bus: cannot identify the caller of ") + method + ": " +
                      sd_bus_message_get_error(reply)->message);
    } else if (const int r = parse_credentials(reply, creds); r < 0) {
      io::log_warning(std::string("D-Bus: bad GetConnectionCredentials reply: ") + errno_text(r));
      creds = {};
    }
    if (!is_privileged(creds)) {
      io::log_notice(std::string("D-Bus: refused ") + method + " to uid " +
                     (creds.have_uid ? std::to_string(creds.uid) : std::string("?")) + " (" +
                     (sd_bus_message_get_sender(call) ? sd_bus_message_get_sender(call) : "?") +
                     ")");
      sd_bus_reply_method_errorf(call, kAccessDenied, "%s requires root or membership of group %s",
                                 method, kPrivilegedGroup);
      return 0;
    }
    if (pending.kind == Call::Reprovision) {
      io::log_info("D-Bus: Reprovision requested by uid " + std::to_string(creds.uid));
      // Reply first: the caller learns the outcome from PropertiesChanged, which it may only
      // start trusting once the call returned.
      sd_bus_reply_method_return(call, "");
      (void)self.control_.reprovision();
    } else {
      self.reply_connection_info(call, creds.uid);
    }
    return 0;
  }

  void reply_connection_info(sd_bus_message* call, uid_t uid) {
    const auto info = control_.connection_info();
    if (!info) {
      sd_bus_reply_method_errorf(call, kNotProvisioned, "dpsd has no assignment yet (State=%s)",
                                 to_string(control_.status().state));
      return;
    }
    io::log_info("D-Bus: connection info handed to uid " + std::to_string(uid));
    sd_bus_message* raw = nullptr;
    int r = sd_bus_message_new_method_return(call, &raw);
    if (r < 0) {
      sd_bus_reply_method_errno(call, r, nullptr);
      return;
    }
    MessagePtr reply(raw);
    // The reply carries a key: have sd-bus wipe its memory when the message is freed.
    sd_bus_message_sensitive(reply.get());
    r = sd_bus_message_append(reply.get(), "a{sv}", 4, "AssignedHub", "s",
                              info->assigned_hub.c_str(), "DeviceId", "s", info->device_id.c_str(),
                              "AuthType", "s", info->auth_type.c_str(), "SymmetricKey", "s",
                              info->symmetric_key.c_str());
    if (r >= 0) r = sd_bus_send(nullptr, reply.get(), nullptr);
    if (r < 0) sd_bus_reply_method_errno(call, r, nullptr);
  }

  static const sd_bus_vtable kVtable[];

  ProvisioningControl& control_;
  StatusModel seen_;  // what the bus was last told
  bool disconnect_logged_ = false;
  BusPtr bus_;
  SlotPtr vtable_slot_;
};

#define DPSD_PROPERTY(name, sig) \
  SD_BUS_PROPERTY(name, sig, SdBusService::get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)

// Methods are UNPRIVILEGED to sd-bus: otherwise it would demand CAP_SYS_ADMIN from the caller
// via /proc. Authorization is ours (authorize), on top of the bus policy file.
const sd_bus_vtable SdBusService::kVtable[] = {
    SD_BUS_VTABLE_START(0),
    DPSD_PROPERTY("State", "s"),
    DPSD_PROPERTY("AssignedHub", "s"),
    DPSD_PROPERTY("DeviceId", "s"),
    DPSD_PROPERTY("RegistrationId", "s"),
    DPSD_PROPERTY("IdScope", "s"),
    DPSD_PROPERTY("Substatus", "s"),
    DPSD_PROPERTY("Source", "s"),
    DPSD_PROPERTY("LastError", "s"),
    DPSD_PROPERTY("Attempts", "u"),
    DPSD_PROPERTY("LastAttemptUSec", "t"),
    DPSD_PROPERTY("NextAttemptUSec", "t"),
    DPSD_PROPERTY("ProvisionedUSec", "t"),
    DPSD_PROPERTY("CertificateNotAfterUSec", "t"),
    SD_BUS_METHOD("Reprovision", "", "", SdBusService::method_reprovision,
                  SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("GetConnectionInfo", "", , "a{sv}", SD_BUS_PARAM(info),
                             SdBusService::method_connection_info, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

#undef DPSD_PROPERTY

}  // namespace

Expected<std::unique_ptr<BusService>> BusService::create(sd_event* event,
                                                         ProvisioningControl& control) {
  auto service = std::make_unique<SdBusService>(control);
  if (auto started = service->start(event); !started) return Error{started.error()};
  return std::unique_ptr<BusService>(std::move(service));
}

const char* to_string(ProvisioningState state) {
  switch (state) {
    case ProvisioningState::Unprovisioned:
      return "unprovisioned";
    case ProvisioningState::Provisioning:
      return "provisioning";
    case ProvisioningState::Provisioned:
      return "provisioned";
    case ProvisioningState::Retrying:
      return "retrying";
    case ProvisioningState::Failed:
      return "failed";
  }
  return "unprovisioned";
}

}  // namespace dpsd::app
