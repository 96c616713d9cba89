#pragma once
// A raw sd-bus client of io.dpsd.Provisioning1 for the in-process BusService tests. The service
// and this client share the test's one sd-event loop, so every call is asynchronous and the
// loop runs (bounded) until the reply arrived: a blocking call would wait for a service that
// cannot answer while the loop stands still. Callers of another uid run in a forked child.
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/wait.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "support/loop_run.hpp"

namespace dpsd::test {

using namespace std::chrono_literals;

constexpr const char* kServiceName = "io.dpsd.Provisioning1";
constexpr const char* kObjectPath = "/io/dpsd/Provisioning1";
constexpr const char* kServiceInterface = "io.dpsd.Provisioning1";
constexpr const char* kProperties = "org.freedesktop.DBus.Properties";

struct MessageUnref {
  void operator()(sd_bus_message* m) const { sd_bus_message_unref(m); }
};
using MessageRef = std::unique_ptr<sd_bus_message, MessageUnref>;
struct BusUnref {
  void operator()(sd_bus* bus) const { sd_bus_flush_close_unref(bus); }
};
struct SlotUnref {
  void operator()(sd_bus_slot* slot) const { sd_bus_slot_unref(slot); }
};

// A property's value as the bus carried it (the interface uses s, u and t only).
using Value = std::variant<std::string, std::uint32_t, std::uint64_t>;
using Values = std::map<std::string, Value>;

// Reads one variant ("v") at the message's read position.
inline Value read_variant(sd_bus_message* m) {
  char type = 0;
  const char* contents = nullptr;
  if (sd_bus_message_peek_type(m, &type, &contents) < 0 || type != 'v' || contents == nullptr) {
    throw std::runtime_error("not a variant");
  }
  Value value;
  if (std::strcmp(contents, "s") == 0) {
    const char* s = nullptr;
    if (sd_bus_message_read(m, "v", "s", &s) < 0) throw std::runtime_error("bad s");
    value = std::string(s);
  } else if (std::strcmp(contents, "u") == 0) {
    std::uint32_t u = 0;
    if (sd_bus_message_read(m, "v", "u", &u) < 0) throw std::runtime_error("bad u");
    value = u;
  } else if (std::strcmp(contents, "t") == 0) {
    std::uint64_t t = 0;
    if (sd_bus_message_read(m, "v", "t", &t) < 0) throw std::runtime_error("bad t");
    value = t;
  } else {
    throw std::runtime_error(std::string("unexpected variant type ") + contents);
  }
  return value;
}

// Reads an a{sv} at the message's read position.
inline Values read_dict(sd_bus_message* m) {
  Values out;
  if (sd_bus_message_enter_container(m, 'a', "{sv}") < 0) throw std::runtime_error("not a{sv}");
  while (sd_bus_message_enter_container(m, 'e', "sv") > 0) {
    const char* key = nullptr;
    if (sd_bus_message_read(m, "s", &key) < 0) throw std::runtime_error("bad dict key");
    out[key] = read_variant(m);
    sd_bus_message_exit_container(m);
  }
  sd_bus_message_exit_container(m);
  return out;
}

// What came back from a call: the D-Bus error name (empty on success) and the reply.
struct CallResult {
  std::string error_name;
  std::string error_message;
  MessageRef reply;
  bool ok() const { return reply && error_name.empty(); }
};

// One PropertiesChanged signal as received.
struct PropertiesChanged {
  std::string interface;
  Values changed;
  std::vector<std::string> invalidated;
};

class BusClient {
 public:
  BusClient(const std::string& address, sd_event* loop) : loop_(loop) {
    sd_bus* raw = nullptr;
    check(sd_bus_new(&raw), "sd_bus_new");
    bus_.reset(raw);
    check(sd_bus_set_address(raw, address.c_str()), "sd_bus_set_address");
    check(sd_bus_set_bus_client(raw, 1), "sd_bus_set_bus_client");
    check(sd_bus_start(raw), "sd_bus_start");
    check(sd_bus_attach_event(raw, loop, SD_EVENT_PRIORITY_NORMAL), "sd_bus_attach_event");
    sd_bus_slot* slot = nullptr;
    // AddMatch is answered by the bus daemon, not by the service: a blocking call is fine here.
    check(sd_bus_match_signal(raw, &slot, nullptr, kObjectPath, kProperties, "PropertiesChanged",
                              on_properties_changed, this),
          "sd_bus_match_signal");
    match_.reset(slot);
  }
  ~BusClient() {
    match_.reset();
    if (bus_) sd_bus_detach_event(bus_.get());
  }
  BusClient(const BusClient&) = delete;
  BusClient& operator=(const BusClient&) = delete;

  // Calls `member` of `interface` on the service; `append` adds the arguments.
  CallResult call(const char* interface, const char* member,
                  const std::function<int(sd_bus_message*)>& append = {}) {
    sd_bus_message* raw = nullptr;
    check(sd_bus_message_new_method_call(bus_.get(), &raw, kServiceName, kObjectPath, interface,
                                         member),
          "sd_bus_message_new_method_call");
    MessageRef m(raw);
    if (append) check(append(m.get()), "append arguments");
    CallResult result;
    bool done = false;
    struct Waiter {
      CallResult* result;
      bool* done;
    } waiter{&result, &done};
    sd_bus_slot* slot = nullptr;
    check(sd_bus_call_async(
              bus_.get(), &slot, m.get(),
              [](sd_bus_message* reply, void* userdata, sd_bus_error*) {
                auto* w = static_cast<Waiter*>(userdata);
                if (const sd_bus_error* e = sd_bus_message_get_error(reply)) {
                  w->result->error_name = e->name ? e->name : "";
                  w->result->error_message = e->message ? e->message : "";
                }
                w->result->reply.reset(sd_bus_message_ref(reply));
                *w->done = true;
                return 0;
              },
              &waiter, 0),
          "sd_bus_call_async");
    const std::unique_ptr<sd_bus_slot, SlotUnref> pending(slot);
    if (!run_loop_until(
            loop_, [&] { return done; }, 20s)) {
      throw std::runtime_error(std::string("no reply to ") + member + " within 20 s");
    }
    return result;
  }

  CallResult get(const std::string& property) {
    return call(kProperties, "Get", [&](sd_bus_message* m) {
      return sd_bus_message_append(m, "ss", kServiceInterface, property.c_str());
    });
  }
  // The property's value; throws with the error name when Get failed.
  Value value(const std::string& property) {
    CallResult r = get(property);
    if (!r.ok()) throw std::runtime_error("Get " + property + ": " + r.error_name);
    return read_variant(r.reply.get());
  }
  Values all() {
    CallResult r = call(kProperties, "GetAll", [](sd_bus_message* m) {
      return sd_bus_message_append(m, "s", kServiceInterface);
    });
    if (!r.ok()) throw std::runtime_error("GetAll: " + r.error_name);
    return read_dict(r.reply.get());
  }

  // Every PropertiesChanged received so far (the loop delivers them).
  const std::vector<PropertiesChanged>& changes() const { return changes_; }

 private:
  static void check(int r, const char* what) {
    if (r < 0) throw std::runtime_error(std::string(what) + ": " + std::strerror(-r));
  }
  static int on_properties_changed(sd_bus_message* m, void* userdata, sd_bus_error*) {
    PropertiesChanged signal;
    const char* interface = nullptr;
    if (sd_bus_message_read(m, "s", &interface) < 0) return 0;
    signal.interface = interface;
    signal.changed = read_dict(m);
    if (sd_bus_message_enter_container(m, 'a', "s") >= 0) {
      const char* name = nullptr;
      while (sd_bus_message_read(m, "s", &name) > 0) signal.invalidated.emplace_back(name);
      sd_bus_message_exit_container(m);
    }
    static_cast<BusClient*>(userdata)->changes_.push_back(std::move(signal));
    return 0;
  }

  sd_event* loop_;
  std::unique_ptr<sd_bus, BusUnref> bus_;
  std::unique_ptr<sd_bus_slot, SlotUnref> match_;
  std::vector<PropertiesChanged> changes_;
};

// Calls `member` (no arguments) of the service from a forked child that runs as user nobody with
// exactly `groups` as its supplementary groups, while this process keeps running `loop` so the
// service can answer. Returns the D-Bus error name, or "" when the call succeeded.
inline std::string call_as_nobody(sd_event* loop, const std::string& address, const char* member,
                                  const std::vector<gid_t>& groups) {
  const passwd* nobody = ::getpwnam("nobody");
  if (!nobody) throw std::runtime_error("no user nobody");
  const uid_t uid = nobody->pw_uid;
  const gid_t gid = nobody->pw_gid;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    // The child: only async-signal-safe steps until it is nobody, then a bus of its own.
    ::close(fds[0]);
    std::string answer = "setup failed";
    if (::setgroups(groups.size(), groups.data()) == 0 && ::setgid(gid) == 0 &&
        ::setuid(uid) == 0) {
      sd_bus* bus = nullptr;
      sd_bus_error error = SD_BUS_ERROR_NULL;
      sd_bus_message* reply = nullptr;
      if (sd_bus_new(&bus) >= 0 && sd_bus_set_address(bus, address.c_str()) >= 0 &&
          sd_bus_set_bus_client(bus, 1) >= 0 && sd_bus_start(bus) >= 0) {
        const int r = sd_bus_call_method(bus, kServiceName, kObjectPath, kServiceInterface, member,
                                         &error, &reply, "");
        answer = r >= 0 ? "" : (error.name ? error.name : "errno " + std::to_string(-r));
      } else {
        answer = "cannot connect to the bus as nobody";
      }
    }
    (void)!::write(fds[1], answer.data(), answer.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  int status = 0;
  const bool exited = run_loop_until(
      loop, [&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 20s);
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    ::close(fds[0]);
    throw std::runtime_error(std::string("the child calling ") + member +
                             " as nobody did not finish within 20 s");
  }
  char buffer[512];
  const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
  ::close(fds[0]);
  return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string();
}

}  // namespace dpsd::test
