// The long-running daemon as a gateway boots it: DPS unreachable, throttling, refusals, a cached
// assignment, config changes, SIGTERM mid-poll and a clock that is not set yet. The daemon's
// state is read from what it tells systemd (READY=1, STATUS=) on a test NOTIFY_SOCKET, from the
// state file, and from what reached the emulator.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>

#include "dpsd_fixture.hpp"
#include "support/net.hpp"
#include "support/notify_socket.hpp"
#include "support/wait.hpp"

namespace dpsd::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// utime + stime of a process, in clock ticks converted to milliseconds.
long cpu_ms(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = content.rfind(')');
  std::istringstream fields(content.substr(close + 2));
  std::vector<std::string> f;
  for (std::string x; fields >> x;) f.push_back(x);
  // After "pid (comm) ": state is f[0]; utime is field 14 → f[11], stime f[12].
  const long ticks = std::stol(f.at(11)) + std::stol(f.at(12));
  return ticks * 1000 / sysconf(_SC_CLK_TCK);
}

class Boot : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { emulator_ = std::make_unique<DpsEmulator>(EmulatorOptions{}); }
  static void TearDownTestSuite() { emulator_.reset(); }
  DpsEmulator& emulator() { return *emulator_; }

  std::unique_ptr<Device> enroll(json scenario = json::object(), const std::string& suffix = "") {
    return enroll_device(emulator(), regid_for_this_test("boot-", suffix), std::move(scenario));
  }

  // Starts the daemon (no --once, no bus) with a test notify socket.
  std::unique_ptr<Process> start_daemon(const Device& device,
                                        std::map<std::string, std::string> env = {}) {
    notify_ = std::make_unique<NotifyCapture>(device.dir() / "notify.sock");
    ProcessOptions options;
    options.env = std::move(env);
    options.env["NOTIFY_SOCKET"] = notify_->path().string();
    return std::make_unique<Process>(std::vector<std::string>{DPSD_BINARY, "--no-bus", "--config",
                                                              device.config_path().string()},
                                     options);
  }

  bool wait_status(const std::string& prefix, std::chrono::milliseconds timeout) {
    return wait_until([&] { return notify_->last_status().rfind(prefix, 0) == 0; }, timeout);
  }

  static std::unique_ptr<DpsEmulator> emulator_;
  std::unique_ptr<NotifyCapture> notify_;
};

std::unique_ptr<DpsEmulator> Boot::emulator_;

TEST_F(Boot, DpsUnreachableAtFirstBootRetriesPolitelyThenProvisions) {
  // An emulator of its own that is not running yet: the uplink is down at boot.
  DpsEmulator late(EmulatorOptions{});
  late.stop();
  Device device(late, "boot-late-uplink");
  late.set_device(device.regid(), device.key(), {{"name", "immediate"}});
  device.write_config("[retry]\ninitial = \"200ms\"\nmax = \"2s\"\n");
  // write_config already wrote a [retry] table; rewrite without it so ours is the only one.
  std::string text = read_file(device.config_path());
  text =
      std::regex_replace(text, std::regex("\\[retry\\]\ninitial = \"200ms\"\nmax = \"1s\"\n"), "");
  write_file(device.config_path(), text);
  auto dpsd = start_daemon(device);
  ASSERT_TRUE(wait_until([&] { return notify_->ready(); }, 10s)) << dpsd->stderr_text();
  ASSERT_TRUE(wait_until(
      [&] {
        const std::string err = dpsd->stderr_text();
        std::size_t n = 0;
        for (auto pos = err.find("attempt failed"); pos != std::string::npos;
             pos = err.find("attempt failed", pos + 1)) {
          ++n;
        }
        return n >= 5;
      },
      30s))
      << "dpsd did not keep retrying: " << dpsd->stderr_text();
  EXPECT_TRUE(dpsd->running());
  EXPECT_EQ(notify_->last_status().rfind("Retrying: ", 0), 0U) << notify_->last_status();
  // The delays grow (full jitter below a doubling ceiling) and never spin.
  std::vector<double> delays;
  const std::regex next("next attempt in ([0-9.]+) s");
  const std::string err = dpsd->stderr_text();
  for (std::sregex_iterator it(err.begin(), err.end(), next), end; it != end; ++it) {
    delays.push_back(std::stod((*it)[1]));
  }
  ASSERT_GE(delays.size(), 5U);
  for (double d : delays) {
    EXPECT_GE(d, 0.019) << "a retry came sooner than a tenth of the initial delay";
    EXPECT_LE(d, 2.0);
  }
  EXPECT_LE(delays[0], 0.2);
  EXPECT_GT(*std::max_element(delays.begin() + 2, delays.end()), delays[0]);
  EXPECT_LT(cpu_ms(dpsd->pid()), 500) << "dpsd burned CPU while DPS was unreachable";

  late.start();
  ASSERT_TRUE(wait_status("Provisioned: ", 20s))
      << "not provisioned once DPS came up: " << notify_->last_status() << "\n"
      << dpsd->stderr_text();
  EXPECT_EQ(device.state()["assignedHub"], "hub-a.emulator.test");
  EXPECT_TRUE(dpsd->running());
  dpsd->signal(SIGTERM);
  EXPECT_EQ(dpsd->wait_for_exit(5s), 0);
}

struct RecoverCase {
  const char* name;
  const char* scenario;
};

class BootRecovers : public Boot, public ::testing::WithParamInterface<RecoverCase> {};

TEST_P(BootRecovers, EndsProvisioned) {
  auto device = enroll(json::parse(GetParam().scenario), std::string("-") + GetParam().name);
  auto dpsd = start_daemon(*device);
  ASSERT_TRUE(wait_status("Provisioned: ", 30s))
      << GetParam().name << ": " << notify_->last_status() << "\n"
      << dpsd->stderr_text();
  EXPECT_EQ(device->state()["status"], "assigned");
  EXPECT_TRUE(dpsd->running());
}

INSTANTIATE_TEST_SUITE_P(
    Scenarios, BootRecovers,
    ::testing::Values(
        RecoverCase{"throttled", R"({"name":"throttle","status":429,"times":2,"retry_after":1})"},
        RecoverCase{"servererror", R"({"name":"throttle","status":500,"times":1,"retry_after":1})"},
        RecoverCase{"dropmidpoll", R"({"name":"drop_mid_poll","times":1,"retry_after":1})"},
        RecoverCase{"malformed", R"({"name":"malformed","times":2})"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(Boot, RefusalSetsFailedKeepsRunningAndLeavesStateAlone) {
  for (const char* scenario : {R"({"name":"unauthorized"})", R"({"name":"disabled"})"}) {
    auto device = enroll(json::parse(scenario), json::parse(scenario)["name"].get<std::string>());
    auto dpsd = start_daemon(*device);
    ASSERT_TRUE(wait_status("Failed, needs attention: ", 20s))
        << scenario << ": " << notify_->last_status() << "\n"
        << dpsd->stderr_text();
    const std::string status = notify_->last_status();
    EXPECT_TRUE(status.find("401") != std::string::npos ||
                status.find("disabled") != std::string::npos)
        << status;
    std::this_thread::sleep_for(500ms);
    EXPECT_TRUE(dpsd->running()) << "dpsd exited after a refusal";
    EXPECT_FALSE(device->has_state());
    // The slow schedule: no second registration within the default hour.
    EXPECT_EQ(emulator().count_events("connect", device->regid()), 1U);
  }
}

TEST_F(Boot, CachedStateServedAtOnceWithDpsDown) {
  // An emulator of this test's own, so it can really go away after the first provisioning.
  DpsEmulator own(EmulatorOptions{});
  Device device(own, "boot-cache-offline");
  own.set_device(device.regid(), device.key(), {{"name", "immediate"}});
  ASSERT_EQ(device.once().exit_code, 0);
  const std::string before = device.state_text();
  own.stop();                                  // DPS unreachable from here on: connection refused
  std::filesystem::remove(device.env_path());  // /run is empty at boot
  const auto start = std::chrono::steady_clock::now();
  auto dpsd = start_daemon(device);
  ASSERT_TRUE(wait_until([&] { return notify_->ready(); }, 10s)) << dpsd->stderr_text();
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, 3s) << "READY took too long with a cache";
  EXPECT_EQ(notify_->last_status().rfind("Provisioned: ", 0), 0U) << notify_->last_status();
  EXPECT_NE(notify_->last_status().find("(from cache)"), std::string::npos);
  EXPECT_NE(device.env_text().find("IOTHUB_HOSTNAME=hub-a.emulator.test"), std::string::npos);
  std::this_thread::sleep_for(500ms);
  // Default reprovision_on_start = "never": DPS is not even tried.
  EXPECT_EQ(dpsd->stderr_text().find("connecting to"), std::string::npos) << dpsd->stderr_text();
  EXPECT_EQ(device.state_text(), before);
  EXPECT_TRUE(dpsd->running());
}

TEST_F(Boot, FailingBackgroundConfirmationKeepsCachedAssignment) {
  auto device = enroll({{"name", "immediate"}});
  ASSERT_EQ(device->once().exit_code, 0);
  const std::string before = device->state_text();
  device->write_config("", "individual", {}, {}, "reprovision_on_start = \"always\"\n");
  emulator().set_scenario(device->regid(), {{"name", "unauthorized"}});
  auto dpsd = start_daemon(*device);
  ASSERT_TRUE(wait_status("Provisioned: ", 10s)) << notify_->last_status();
  ASSERT_TRUE(wait_until(
      [&] { return notify_->last_status().find("last confirmation failed") != std::string::npos; },
      15s))
      << notify_->last_status() << "\n"
      << dpsd->stderr_text();
  EXPECT_NE(notify_->last_status().find("401"), std::string::npos);
  EXPECT_EQ(device->state_text(), before);
  EXPECT_TRUE(dpsd->running());
}

TEST_F(Boot, ChangedScopeWithCachedStateReprovisions) {
  auto device = enroll({{"name", "immediate"}});
  ASSERT_EQ(device->once().exit_code, 0);
  const std::string fingerprint = device->state()["fingerprint"];
  // Same device, new endpoint spelling (127.0.0.1 instead of localhost): new fingerprint.
  device->write_config("", "individual", "127.0.0.1:" + std::to_string(emulator().port()));
  auto dpsd = start_daemon(*device);
  ASSERT_TRUE(
      wait_until([&] { return emulator().count_events("connect", device->regid()) >= 2; }, 15s))
      << dpsd->stderr_text();
  ASSERT_TRUE(wait_status("Provisioned: hub", 15s)) << notify_->last_status();
  EXPECT_EQ(notify_->last_status().find("(from cache)"), std::string::npos);
  EXPECT_NE(device->state()["fingerprint"], fingerprint);
}

TEST_F(Boot, SighupWithNewRegistrationIdReprovisions) {
  auto device = enroll({{"name", "immediate"}});
  auto dpsd = start_daemon(*device);
  ASSERT_TRUE(wait_status("Provisioned: ", 15s)) << dpsd->stderr_text();
  // Unchanged config: SIGHUP keeps the assignment and does not register again.
  dpsd->signal(SIGHUP);
  ASSERT_TRUE(wait_until(
      [&] { return dpsd->stderr_text().find("inputs unchanged") != std::string::npos; }, 10s))
      << dpsd->stderr_text();
  EXPECT_EQ(emulator().count_events("connect", device->regid()), 1U);
  // A new registration id for the same key.
  const std::string other = device->regid() + "-b";
  emulator().set_device(other, device->key(), {{"name", "immediate"}, {"device_id", "renamed"}});
  std::string text = read_file(device->config_path());
  text = std::regex_replace(text, std::regex("registration_id = \"[^\"]+\""),
                            "registration_id = \"" + other + "\"");
  write_file(device->config_path(), text);
  dpsd->signal(SIGHUP);
  ASSERT_TRUE(wait_until(
      [&] { return device->has_state() && device->state()["deviceId"] == "renamed"; }, 15s))
      << dpsd->stderr_text();
  EXPECT_EQ(emulator().count_events("connect", other), 1U);
  EXPECT_TRUE(dpsd->running());
}

TEST_F(Boot, SigtermDuringPollExitsCleanlyAndLeavesStateAlone) {
  auto device = enroll({{"name", "normal"}, {"polls", 10}, {"retry_after", 1}});
  auto dpsd = start_daemon(*device);
  ASSERT_TRUE(emulator().wait_for_events("publish", device->regid(), 2, 15s))
      << "no poll reached the emulator: " << dpsd->stderr_text();
  const auto start = std::chrono::steady_clock::now();
  dpsd->signal(SIGTERM);
  const auto code = dpsd->wait_for_exit(5s);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(code.has_value()) << "dpsd did not exit on SIGTERM";
  EXPECT_EQ(*code, 0);
  EXPECT_LT(took, 1s);
  EXPECT_FALSE(device->has_state());
  EXPECT_NE(notify_->datagrams().back().find("STOPPING=1"), std::string::npos);
}

TEST_F(Boot, ClockBeforeBuildTimeWaitsThenProceeds) {
  auto device = enroll({{"name", "immediate"}});
  const auto floor = static_cast<long long>(std::time(nullptr)) + 3;
  auto dpsd = start_daemon(*device, {{"DPSD_CLOCK_FLOOR", std::to_string(floor)}});
  ASSERT_TRUE(wait_until([&] { return notify_->ready(); }, 10s)) << dpsd->stderr_text();
  EXPECT_NE(notify_->last_status().find("waiting for the clock to be set"), std::string::npos)
      << notify_->last_status();
  EXPECT_NE(dpsd->stderr_text().find("earlier than"), std::string::npos);
  EXPECT_EQ(emulator().count_events("connect", device->regid()), 0U)
      << "dpsd sent a token before the clock was set";
  ASSERT_TRUE(wait_status("Provisioned: ", 15s)) << notify_->last_status() << dpsd->stderr_text();
  EXPECT_GE(static_cast<long long>(std::time(nullptr)), floor);
  EXPECT_NE(dpsd->stderr_text().find("clock is set now"), std::string::npos);
}

TEST_F(Boot, WatchdogIsPingedFromTheLoop) {
  auto device = enroll({{"name", "immediate"}});
  // The watchdog PID must be the daemon's own; a shell would not help, so run it with the env
  // and accept the PID check via WATCHDOG_PID unset (sd_watchdog_enabled accepts no PID).
  auto dpsd = start_daemon(*device, {{"WATCHDOG_USEC", "400000"}});
  ASSERT_TRUE(wait_until(
      [&] {
        std::size_t n = 0;
        for (const auto& m : notify_->datagrams()) n += m.find("WATCHDOG=1") != std::string::npos;
        return n >= 3;
      },
      10s))
      << "no WATCHDOG=1 pings";
}

}  // namespace
}  // namespace dpsd::test
