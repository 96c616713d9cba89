// org.freedesktop.LogControl1 in process (issue 14 §4): exported by app::BusService next to
// io.dpsd.Provisioning1 on a private system-style dbus-daemon, read and written the way
// `systemctl service-log-level` does (Properties.Get/Set on /org/freedesktop/LogControl1).
// Writing is for root and group dpsd: other callers run in a forked child as user nobody. The
// bus has no project policy, so the service's own check of the caller is what is tested.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>

#include "app/bus_service.hpp"
#include "bus_client.hpp"
#include "io/event_loop.hpp"
#include "io/log.hpp"
#include "support/loop_run.hpp"
#include "support/private_bus.hpp"

namespace dpsd::test {
namespace {

constexpr const char* kLogPath = "/org/freedesktop/LogControl1";
constexpr const char* kLogInterface = "org.freedesktop.LogControl1";

class NoControl final : public app::ProvisioningControl {
 public:
  const app::StatusModel& status() const override { return model; }
  std::uint64_t reprovision() override { return 0; }
  std::optional<app::ConnectionInfo> connection_info() const override { return std::nullopt; }
  app::StatusModel model;
};

// Get/Set of one LogControl1 property from a client connection of this process, asynchronous
// on the shared loop (the service answers on the same loop).
class LogControlClient {
 public:
  LogControlClient(const std::string& address, sd_event* loop) : loop_(loop) {
    sd_bus* raw = nullptr;
    if (sd_bus_new(&raw) < 0) throw std::runtime_error("sd_bus_new");
    bus_.reset(raw);
    if (sd_bus_set_address(raw, address.c_str()) < 0 || sd_bus_set_bus_client(raw, 1) < 0 ||
        sd_bus_start(raw) < 0 || sd_bus_attach_event(raw, loop, 0) < 0) {
      throw std::runtime_error("cannot connect the test client");
    }
  }
  ~LogControlClient() { sd_bus_detach_event(bus_.get()); }

  CallResult call(const char* member, const std::function<int(sd_bus_message*)>& append) {
    sd_bus_message* raw = nullptr;
    if (sd_bus_message_new_method_call(bus_.get(), &raw, kServiceName, kLogPath, kProperties,
                                       member) < 0) {
      throw std::runtime_error("new method call");
    }
    MessageRef m(raw);
    if (append(m.get()) < 0) throw std::runtime_error("append");
    CallResult result;
    bool done = false;
    struct Waiter {
      CallResult* result;
      bool* done;
    } waiter{&result, &done};
    sd_bus_slot* slot = nullptr;
    const auto on_reply = [](sd_bus_message* reply, void* userdata, sd_bus_error*) {
      auto* w = static_cast<Waiter*>(userdata);
      if (const sd_bus_error* e = sd_bus_message_get_error(reply)) {
        w->result->error_name = e->name ? e->name : "";
      }
      w->result->reply.reset(sd_bus_message_ref(reply));
      *w->done = true;
      return 0;
    };
    if (sd_bus_call_async(bus_.get(), &slot, m.get(), on_reply, &waiter, 0) < 0) {
      throw std::runtime_error("call_async");
    }
    const std::unique_ptr<sd_bus_slot, SlotUnref> pending(slot);
    if (!run_loop_until(
            loop_, [&] { return done; }, 20s)) {
      throw std::runtime_error(std::string("no reply to ") + member + " within 20 s");
    }
    return result;
  }

  std::string get(const char* property) {
    CallResult r = call("Get", [&](sd_bus_message* m) {
      return sd_bus_message_append(m, "ss", kLogInterface, property);
    });
    if (!r.ok()) throw std::runtime_error(std::string("Get ") + property + ": " + r.error_name);
    return std::get<std::string>(read_variant(r.reply.get()));
  }
  // The D-Bus error name, "" on success.
  std::string set(const char* property, const char* value) {
    return call("Set",
                [&](sd_bus_message* m) {
                  return sd_bus_message_append(m, "ssv", kLogInterface, property, "s", value);
                })
        .error_name;
  }

 private:
  sd_event* loop_;
  std::unique_ptr<sd_bus, BusUnref> bus_;
};

// Sets LogLevel from a forked child running as nobody with exactly `groups`; the error name or "".
std::string set_level_as_nobody(sd_event* loop, const std::string& address, const char* level,
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
    ::close(fds[0]);
    std::string answer = "setup failed";
    if (::setgroups(groups.size(), groups.data()) == 0 && ::setgid(gid) == 0 &&
        ::setuid(uid) == 0) {
      sd_bus* bus = nullptr;
      sd_bus_error error = SD_BUS_ERROR_NULL;
      if (sd_bus_new(&bus) >= 0 && sd_bus_set_address(bus, address.c_str()) >= 0 &&
          sd_bus_set_bus_client(bus, 1) >= 0 && sd_bus_start(bus) >= 0) {
        const int r = sd_bus_set_property(bus, kServiceName, kLogPath, kLogInterface, "LogLevel",
                                          &error, "s", level);
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
  if (!run_loop_until(
          loop, [&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 20s)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    ::close(fds[0]);
    throw std::runtime_error("the child setting LogLevel as nobody did not finish within 20 s");
  }
  char buffer[512];
  const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
  ::close(fds[0]);
  return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : std::string();
}

class LogControl : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { dpsd_gid_ = ensure_dpsd_group(); }

  void SetUp() override {
    io::set_log_max_priority(6);
    io::set_log_target(io::LogTarget::Auto);
    ASSERT_EQ(::setenv("DBUS_SYSTEM_BUS_ADDRESS", bus_.plain_address().c_str(), 1), 0);
    auto created = app::BusService::create(loop_.get(), control_);
    ASSERT_TRUE(created) << created.error();
    service_ = std::move(created.value());
    client_ = std::make_unique<LogControlClient>(bus_.plain_address(), loop_.get());
  }
  void TearDown() override {
    io::set_log_max_priority(6);
    io::set_log_target(io::LogTarget::Auto);
  }

  static gid_t dpsd_gid_;
  PrivateBus bus_{/*include_project_policy=*/false};
  io::EventLoop loop_;
  NoControl control_;
  std::unique_ptr<app::BusService> service_;
  std::unique_ptr<LogControlClient> client_;
};

gid_t LogControl::dpsd_gid_ = 0;

TEST_F(LogControl, PropertiesReadAsSystemdSpellsThem) {
  EXPECT_EQ(client_->get("LogLevel"), "info");
  EXPECT_EQ(client_->get("LogTarget"), "auto");
  EXPECT_EQ(client_->get("SyslogIdentifier"), "dpsd");
  io::set_log_verbose(true);
  EXPECT_EQ(client_->get("LogLevel"), "debug");
}

TEST_F(LogControl, RootSetsTheLevelAndTheTarget) {
  EXPECT_EQ(client_->set("LogLevel", "debug"), "");
  EXPECT_EQ(io::log_max_priority(), 7);
  EXPECT_EQ(client_->get("LogLevel"), "debug");
  EXPECT_EQ(client_->set("LogLevel", "warning"), "");
  EXPECT_EQ(io::log_max_priority(), 4);
  EXPECT_EQ(client_->set("LogTarget", "console-prefixed"), "");
  EXPECT_EQ(io::log_target(), io::LogTarget::ConsolePrefixed);
  EXPECT_EQ(client_->get("LogTarget"), "console-prefixed");
}

TEST_F(LogControl, UnknownValuesAreInvalidArgsAndChangeNothing) {
  EXPECT_EQ(client_->set("LogLevel", "loud"), "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_EQ(client_->set("LogTarget", "kmsg"), "org.freedesktop.DBus.Error.InvalidArgs");
  EXPECT_EQ(client_->get("LogLevel"), "info");
  EXPECT_EQ(client_->get("LogTarget"), "auto");
}

TEST_F(LogControl, SyslogIdentifierIsReadOnly) {
  EXPECT_EQ(client_->set("SyslogIdentifier", "other"),
            "org.freedesktop.DBus.Error.PropertyReadOnly");
}

TEST_F(LogControl, CallerOutsideGroupDpsdCannotSetTheLevel) {
  EXPECT_EQ(set_level_as_nobody(loop_.get(), bus_.plain_address(), "debug", {}),
            "org.freedesktop.DBus.Error.AccessDenied");
  EXPECT_EQ(io::log_max_priority(), 6);
}

TEST_F(LogControl, MemberOfGroupDpsdSetsTheLevel) {
  EXPECT_EQ(set_level_as_nobody(loop_.get(), bus_.plain_address(), "notice", {dpsd_gid_}), "");
  EXPECT_EQ(io::log_max_priority(), 5);
}

}  // namespace
}  // namespace dpsd::test
