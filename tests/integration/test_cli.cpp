// dpsd's command line as an operator meets it: --check-config, bad keys, bad configs, exit codes.
// And dpsctl's, where test_dbus.cpp does not go: `wait` across a dpsd or bus restart, and text
// from DPS printed escaped exactly once.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <csignal>
#include <thread>

#include "dpsd_fixture.hpp"
#include "support/files.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

namespace dpsd::test {
namespace {

struct CliRun {
  int code = -1;
  std::string out;
  std::string err;
};

CliRun dpsd(std::vector<std::string> args) {
  args.insert(args.begin(), DPSD_BINARY);
  Process p(args);
  CliRun run;
  run.code = p.wait_for_exit(std::chrono::seconds(20)).value_or(-1);
  run.out = p.stdout_text();
  run.err = p.stderr_text();
  return run;
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(dir_ / "device.key", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=\n", 0600);
  }
  std::string config(const std::string& key_path, const std::string& extra = "") const {
    return "[provisioning]\nid_scope = \"0ne00000000\"\nregistration_id = \"dev-1\"\n" + extra +
           "[provisioning.attestation]\nsymmetric_key = \"file://" + key_path +
           "\"\n[paths]\nstate_dir = \"" + (dir_ / "state").string() + "\"\nruntime_dir = \"" +
           (dir_ / "run").string() + "\"\n";
  }
  TempDir dir_{"dpsd-cli"};
};

TEST_F(Cli, CheckConfigAcceptsAGoodConfig) {
  write_file(dir_ / "config.toml", config((dir_ / "device.key").string()));
  const CliRun r = dpsd({"--check-config", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("configuration OK"), std::string::npos);
}

TEST_F(Cli, KeyReadableByOthersIsRefusedNamingPathAndMode) {
  write_file(dir_ / "device.key", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=\n", 0644);
  write_file(dir_ / "config.toml", config((dir_ / "device.key").string()));
  const CliRun r = dpsd({"--check-config", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find((dir_ / "device.key").string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("0644"), std::string::npos) << r.err;
  // The daemon refuses to start with it, too, and never prints the key.
  const CliRun once = dpsd({"--once", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(once.code, 2);
  EXPECT_NE(once.err.find("0644"), std::string::npos) << once.err;
  EXPECT_EQ(once.err.find("c2VjcmV0"), std::string::npos);
}

TEST_F(Cli, EveryProblemIsListedWithFileKeyAndReason) {
  write_file(dir_ / "config.toml",
             "[provisioning]\nid_scope = 42\nregistation_id = \"dev-1\"\n"
             "[provisioning.attestation]\nsymmetric_key = \"http://example/key\"\n"
             "[retry]\ninitial = \"soon\"\n");
  const CliRun r = dpsd({"--check-config", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(r.code, 2);
  const std::string file = (dir_ / "config.toml").string();
  EXPECT_NE(r.err.find(file + ": provisioning.id_scope: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("provisioning.registation_id: unknown key"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("registration_id"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("provisioning.attestation.symmetric_key"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("retry.initial"), std::string::npos) << r.err;
}

TEST_F(Cli, DropInsOverrideTheMainFile) {
  write_file(dir_ / "config.toml", config((dir_ / "device.key").string()));
  std::filesystem::create_directories(dir_ / "config.d");
  write_file(dir_ / "config.d" / "50-typo.toml", "[provisioning]\nid_scop = \"x\"\n");
  const CliRun r = dpsd({"--check-config", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find((dir_ / "config.d" / "50-typo.toml").string() + ": provisioning.id_scop"),
            std::string::npos)
      << r.err;
}

TEST_F(Cli, MissingKeyFileIsAClearError) {
  write_file(dir_ / "config.toml", config((dir_ / "nope.key").string()));
  const CliRun r = dpsd({"--once", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find((dir_ / "nope.key").string()), std::string::npos) << r.err;
}

TEST_F(Cli, ShippedConfigNamesWhatAVendorMustFillIn) {
  const CliRun r =
      dpsd({"--check-config", "--config", std::string(DPSD_SOURCE_DIR) + "/etc/dpsd/config.toml"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("provisioning.id_scope"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("provisioning.registration_id"), std::string::npos) << r.err;
}

TEST_F(Cli, BadArgumentsExitTwoWithUsage) {
  EXPECT_EQ(dpsd({"--bogus"}).code, 2);
  EXPECT_EQ(dpsd({"--once", "--timeout", "x"}).code, 2);
  const CliRun help = dpsd({"--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("Exit status"), std::string::npos);
}

// DPS's documented rule (config.cpp cites it): letters, digits, - . _ :, at most 128, the last
// character a letter, a digit or '-'; case-insensitive, so upper case passes.
TEST_F(Cli, CheckConfigAppliesTheRegistrationIdRule) {
  const auto check = [&](const std::string& regid) {
    std::string text = config((dir_ / "device.key").string());
    const std::string from = "registration_id = \"dev-1\"";
    text.replace(text.find(from), from.size(), "registration_id = \"" + regid + "\"");
    write_file(dir_ / "config.toml", text);
    return dpsd({"--check-config", "--config", (dir_ / "config.toml").string()});
  };
  for (const std::string& bad : {std::string(129, 'a'), std::string("device."),
                                 std::string("dev$(id)"), std::string("dev ice")}) {
    const CliRun r = check(bad);
    EXPECT_EQ(r.code, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find("provisioning.registration_id: "), std::string::npos) << r.err;
  }
  for (const std::string& good :
       {std::string(128, 'a'), std::string("Gateway-0042"), std::string("dev-")}) {
    const CliRun r = check(good);
    EXPECT_EQ(r.code, 0) << good << ": " << r.err;
  }
}

// A proxy password in a config others can read is refused like a PIN there, without echoing it.
TEST_F(Cli, CheckConfigRefusesAProxyPasswordInAReadableConfig) {
  write_file(dir_ / "config.toml",
             config((dir_ / "device.key").string()) +
                 "[proxy]\nurl = \"http://u:hunter2@proxy.corp:3128\"\n",
             0644);
  const CliRun r = dpsd({"--check-config", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("proxy.url: credentials in a URL need a config file readable only by its "
                       "owner"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("hunter2"), std::string::npos) << r.err;
  ::chmod((dir_ / "config.toml").c_str(), 0600);
  const CliRun owner_only = dpsd({"--check-config", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(owner_only.code, 0) << owner_only.err;
}

// ---- dpsctl ----------------------------------------------------------------------------------

using namespace std::chrono_literals;

// A private system-style bus that lets root do everything (test_dbus.cpp tests the policy), at
// a fixed socket path so that it can be killed and started again there, as a restart does.
class OpenBus {
 public:
  OpenBus() {
    write_file(dir_ / "bus.conf",
               "<busconfig><type>system</type><listen>unix:path=" + (dir_ / "bus.sock").string() +
                   "</listen><auth>EXTERNAL</auth><policy context=\"default\"><allow user=\"*\"/>"
                   "<allow own=\"*\"/><allow send_destination=\"*\"/><allow receive_sender=\"*\"/>"
                   "</policy></busconfig>\n");
    start();
  }
  std::string address() const { return "unix:path=" + (dir_ / "bus.sock").string(); }
  void start() {
    daemon_ = std::make_unique<Process>(
        std::vector<std::string>{"dbus-daemon", "--config-file=" + (dir_ / "bus.conf").string(),
                                 "--print-address=1", "--nofork"});
    if (!wait_until([&] { return daemon_->stdout_text().find('\n') != std::string::npos; }, 10s)) {
      throw std::runtime_error("dbus-daemon printed no address within 10 s: " +
                               daemon_->stderr_text());
    }
  }
  void kill() {  // as a crash: nobody says goodbye
    daemon_->signal(SIGKILL);
    if (!daemon_->wait_for_exit(10s)) throw std::runtime_error("dbus-daemon survived SIGKILL");
    daemon_.reset();
  }

 private:
  TempDir dir_{"dpsctl-bus"};
  std::unique_ptr<Process> daemon_;
};

class Dpsctl : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { emulator_ = std::make_unique<DpsEmulator>(EmulatorOptions{}); }
  static void TearDownTestSuite() { emulator_.reset(); }
  void TearDown() override {
    if (dpsd_ && HasFailure()) std::cerr << "--- dpsd stderr\n" << dpsd_->stderr_text() << "---\n";
  }

  ProcessOptions bus_env() const {
    ProcessOptions opts;
    opts.env["DBUS_SYSTEM_BUS_ADDRESS"] = bus_.address();
    return opts;
  }
  void start_dpsd(const Device& device) {
    dpsd_ = std::make_unique<Process>(
        std::vector<std::string>{DPSD_BINARY, "--config", device.config_path().string(), "-v"},
        bus_env());
  }
  // One property, via busctl's JSON output; null when it cannot be read.
  nlohmann::json property(const std::string& name) const {
    const CommandResult r = run_command(
        {"busctl", "--address=" + bus_.address(), "--json=short", "get-property",
         "io.dpsd.Provisioning1", "/io/dpsd/Provisioning1", "io.dpsd.Provisioning1", name},
        20s);
    if (r.exit_code != 0) return nullptr;
    return nlohmann::json::parse(r.out)["data"];
  }
  void expect_property_soon(const std::string& name, const nlohmann::json& value) {
    nlohmann::json last;
    ASSERT_TRUE(wait_until(
        [&] {
          last = property(name);
          return last == value;
        },
        30s, 100ms))
        << name << " did not become " << value.dump() << " within 30 s; last " << last.dump();
  }
  // A dpsd that keeps retrying (DPS answers 503) with a `dpsctl wait` started against it.
  std::unique_ptr<Process> wait_on_a_retrying_dpsd(const Device& device) {
    start_dpsd(device);
    expect_property_soon("Attempts", nlohmann::json(1u));
    auto wait = std::make_unique<Process>(
        std::vector<std::string>{DPSCTL_BINARY, "wait", "--timeout", "90"}, bus_env());
    std::this_thread::sleep_for(300ms);  // let it subscribe and read the state
    EXPECT_TRUE(wait->running()) << "dpsctl wait returned while dpsd retries: "
                                 << wait->stderr_text();
    return wait;
  }
  void expect_wait_succeeds(Process& wait) {
    const auto code = wait.wait_for_exit(60s);
    ASSERT_TRUE(code.has_value()) << "dpsctl wait did not return within 60 s of dpsd's success: "
                                  << wait.stderr_text();
    EXPECT_EQ(*code, 0) << wait.stderr_text();
  }

  static std::unique_ptr<DpsEmulator> emulator_;
  OpenBus bus_;
  std::unique_ptr<Process> dpsd_;
};

std::unique_ptr<DpsEmulator> Dpsctl::emulator_;

// dpsd stopped and started again (an upgrade, a crash and systemd's restart) while `dpsctl wait`
// runs: the wait goes on through the gap and completes on the new dpsd's success.
TEST_F(Dpsctl, WaitKeepsWaitingAcrossADpsdRestart) {
  auto device = enroll_device(*emulator_, regid_for_this_test("cli-"),
                              {{"name", "throttle"}, {"status", 503}, {"times", 1000}});
  auto wait = wait_on_a_retrying_dpsd(*device);
  ASSERT_TRUE(dpsd_->stop().has_value());
  ASSERT_TRUE(wait_until([&] { return property("State").is_null(); }, 10s))
      << "dpsd's name was still on the bus 10 s after it stopped";
  std::this_thread::sleep_for(300ms);  // NameOwnerChanged has reached dpsctl by now
  ASSERT_TRUE(wait->running()) << "dpsctl wait returned when dpsd went away: "
                               << wait->stderr_text();
  emulator_->set_scenario(device->regid(), {{"name", "immediate"}});
  start_dpsd(*device);
  expect_wait_succeeds(*wait);
  EXPECT_EQ(property("State"), "provisioned");
}

// dbus-daemon killed and started again at the same address while `dpsctl wait` runs: dpsctl
// connects again (as dpsd does) and completes when dpsd, back on the bus, is provisioned.
TEST_F(Dpsctl, WaitKeepsWaitingAcrossABusRestart) {
  auto device = enroll_device(*emulator_, regid_for_this_test("cli-"),
                              {{"name", "throttle"}, {"status", 503}, {"times", 1000}});
  auto wait = wait_on_a_retrying_dpsd(*device);
  bus_.kill();
  std::this_thread::sleep_for(500ms);  // dpsctl has seen its connection close by now
  ASSERT_TRUE(wait->running()) << "dpsctl wait returned when the bus went away: "
                               << wait->stderr_text();
  emulator_->set_scenario(device->regid(), {{"name", "immediate"}});
  bus_.start();
  expect_wait_succeeds(*wait);
  EXPECT_EQ(property("State"), "provisioned");
}

// A backslash in DPS's text: dpsd escapes it once for the bus (\\, and ESC as \e); dpsctl prints
// the bus's text as it is, not escaped a second time (\\\\, \\e).
TEST_F(Dpsctl, HostileTextIsPrintedEscapedOnce) {
  const std::string hostile = "back\\slash \x1b[31mred";
  auto device = enroll_device(*emulator_, regid_for_this_test("cli-"),
                              {{"name", "unauthorized"}, {"message", hostile}});
  start_dpsd(*device);
  expect_property_soon("State", "failed");
  const std::string on_bus = property("LastError").get<std::string>();
  ASSERT_NE(on_bus.find(R"(back\\slash \e[31mred)"), std::string::npos) << on_bus;

  const CommandResult status = run_command({DPSCTL_BINARY, "status"}, 20s, bus_env());
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("    Last error: " + on_bus + "\n"), std::string::npos) << status.out;
  EXPECT_EQ(status.out.find(R"(back\\\\slash)"), std::string::npos) << status.out;
  EXPECT_EQ(status.out.find(R"(\\e[31m)"), std::string::npos) << status.out;

  const CommandResult wait =
      run_command({DPSCTL_BINARY, "wait", "--timeout", "20"}, 30s, bus_env());
  EXPECT_EQ(wait.exit_code, 1) << wait.err;
  // LastError already says "DPS refused the registration: …": printed once, not twice.
  ASSERT_EQ(on_bus.rfind("DPS refused the registration: ", 0), 0U) << on_bus;
  EXPECT_EQ(wait.err, "dpsctl: " + on_bus + "\n");

  // Our own command line is escaped once too.
  const CommandResult usage =
      run_command({DPSCTL_BINARY, "wait", "--timeout", "a\\b\x1b"}, 20s, bus_env());
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_NE(usage.err.find(R"(not 'a\\b\e')"), std::string::npos) << usage.err;
}

}  // namespace
}  // namespace dpsd::test
