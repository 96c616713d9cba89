// io.dpsd.Provisioning1 on raw sd-bus. sd-bus attaches to sd-event natively
// (sd_bus_attach_event), so the bus shares the daemon's one loop without the poll-data dance that
// sdbus-c++ 1.2.0 would need, and without a second D-Bus library in the process.
#include "app/bus_service.hpp"

#include <systemd/sd-bus.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <variant>
#include <vector>

#include "app/bus_caller.hpp"
#include "app/bus_connection.hpp"
#include "app/log_control.hpp"
#include "core/enum_names.hpp"
#include "core/errno_text.hpp"
#include "core/text_sanitize.hpp"
#include "io/c_ptr.hpp"
#include "io/log.hpp"

namespace dpsd::app {
namespace {

using core::errno_text;

constexpr const char* kBusName = "io.dpsd.Provisioning1";
constexpr const char* kObjectPath = "/io/dpsd/Provisioning1";
constexpr const char* kInterface = "io.dpsd.Provisioning1";
constexpr const char* kPrivilegedGroup = "dpsd";
constexpr const char* kAccessDenied = "org.freedesktop.DBus.Error.AccessDenied";
constexpr const char* kNotProvisioned = "io.dpsd.Provisioning1.Error.NotProvisioned";

using MessagePtr = io::CPtr<sd_bus_message, sd_bus_message_unref>;

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

// What the bus carries for a property. Strings come from DPS replies and files: each one is
// sanitized (issue 10 item 1), so no reader of the bus gets an escape sequence or a line break,
// and sd-bus never refuses a value that is not valid UTF-8.
Value value_of(const Property& p, const StatusModel& s) {
  Value v = p.get(s);
  if (auto* text = std::get_if<std::string>(&v)) *text = core::sanitize_text(*text);
  return v;
}

class SdBusService final : public BusService {
 public:
  SdBusService(sd_event* event, ProvisioningControl& control)
      : control_(control),
        seen_(control.status()),
        connection_(
            event, kBusName, [this](sd_bus* bus) { return export_object(bus); },
            [this] { seen_ = control_.status(); }) {}

  // The first connection; when it fails the connection keeps trying in the background, and
  // says so in the log.
  void start() { (void)connection_.start(); }

  void status_changed() override {
    const StatusModel& now = control_.status();
    std::vector<const char*> changed;
    for (const auto& p : kProperties) {
      if (p.get(now) != p.get(seen_)) changed.push_back(p.name);
    }
    seen_ = now;
    sd_bus* bus = connection_.bus();
    // Off the bus: nothing to tell; a client reads everything afresh when the name reappears.
    if (changed.empty() || !bus) return;
    changed.push_back(nullptr);
    // The getters read the model again, so the signal carries exactly what Get would return.
    const int r = sd_bus_emit_properties_changed_strv(bus, kObjectPath, kInterface,
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

  Expected<SlotPtr> export_object(sd_bus* bus) {
    sd_bus_slot* slot = nullptr;
    const int r = sd_bus_add_object_vtable(bus, &slot, kObjectPath, kInterface, kVtable, this);
    if (r < 0) return Error{"cannot export " + std::string(kObjectPath) + ": " + errno_text(r)};
    SlotPtr owned(slot);
    // On the same connection, so `systemctl service-log-level` finds it under our BusName=.
    if (const Status log_control = export_log_control(bus); !log_control) {
      return Error{log_control.error()};
    }
    return owned;
  }

  static int get_property(sd_bus*, const char*, const char*, const char* property,
                          sd_bus_message* reply, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<SdBusService*>(userdata);
    const Property* p = find_property(property);
    if (!p) return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "%s", property);
    const Value v = value_of(*p, self->control_.status());
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
    int r = sd_bus_call_method_async(sd_bus_message_get_bus(m), &slot, "org.freedesktop.DBus",
                                     "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                     "GetConnectionCredentials", on_credentials, pending.get(), "s",
                                     sd_bus_message_get_sender(m));
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
    // The connection closed under the call (sd-bus fails pending calls first): nobody to answer.
    if (sd_bus_is_open(sd_bus_message_get_bus(call)) <= 0) return 0;

    CallerCredentials creds;
    if (sd_bus_message_is_method_error(reply, nullptr)) {
      io::log_warning(std::string("D-Bus: cannot identify the caller of ") + method + ": " +
                      core::sanitize_text(sd_bus_message_get_error(reply)->message
                                              ? sd_bus_message_get_error(reply)->message
                                              : ""));
    } else if (const int r = parse_credentials(reply, creds); r < 0) {
      io::log_warning(std::string("D-Bus: bad GetConnectionCredentials reply: ") + errno_text(r));
      creds = {};
    }
    if (!is_privileged(creds, kPrivilegedGroup)) {
      const char* sender = sd_bus_message_get_sender(call);
      io::log_notice(std::string("D-Bus: refused ") + method + " to uid " +
                     (creds.have_uid ? std::to_string(creds.uid) : std::string("?")) + " (" +
                     core::sanitize_text(sender ? sender : "?") + ")");
      sd_bus_reply_method_errorf(call, kAccessDenied, "%s requires root or membership of group %s",
                                 method, kPrivilegedGroup);
      return 0;
    }
    if (pending.kind == Call::Reprovision) {
      io::log_info("D-Bus: Reprovision requested by uid " + std::to_string(creds.uid));
      // The daemon coalesces and rate-limits; the reply says when the registration runs
      // (CLOCK_REALTIME µs), and the outcome arrives as PropertiesChanged.
      const std::uint64_t start_usec = self.control_.reprovision();
      sd_bus_reply_method_return(call, "t", start_usec);
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
    // Sanitized like the properties, but for the key: it is base64 that dpsd's config loader
    // checked, which the sanitizer would leave unchanged, and a sanitized copy would be one
    // more heap copy of the secret that nobody wipes.
    const std::string hub = core::sanitize_text(info->assigned_hub);
    const std::string device = core::sanitize_text(info->device_id);
    const std::string auth = core::sanitize_text(info->auth_type);
    r = sd_bus_message_append(reply.get(), "a{sv}", 4, "AssignedHub", "s", hub.c_str(), "DeviceId",
                              "s", device.c_str(), "AuthType", "s", auth.c_str(), "SymmetricKey",
                              "s", info->symmetric_key.c_str());
    if (r >= 0) r = sd_bus_send(nullptr, reply.get(), nullptr);
    if (r < 0) sd_bus_reply_method_errno(call, r, nullptr);
  }

  static const sd_bus_vtable kVtable[];

  ProvisioningControl& control_;
  StatusModel seen_;  // what the bus was last told
  BusConnection connection_;
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
    SD_BUS_METHOD_WITH_NAMES("Reprovision", "", , "t", SD_BUS_PARAM(start_usec),
                             SdBusService::method_reprovision, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_NAMES("GetConnectionInfo", "", , "a{sv}", SD_BUS_PARAM(info),
                             SdBusService::method_connection_info, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

#undef DPSD_PROPERTY

}  // namespace

Expected<std::unique_ptr<BusService>> BusService::create(sd_event* event,
                                                         ProvisioningControl& control) {
  auto service = std::make_unique<SdBusService>(event, control);
  service->start();
  return std::unique_ptr<BusService>(std::move(service));
}

const char* to_string(ProvisioningState state) {
  constexpr std::array<const char*, 5> kNames = {"unprovisioned", "provisioning", "provisioned",
                                                 "retrying", "failed"};
  return core::enum_name(state, kNames, "unprovisioned");
}

}  // namespace dpsd::app
