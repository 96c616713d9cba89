// dpsd on a real (private) system-style bus: a dbus-daemon with a copy of the system policy that
// includes dbus/io.dpsd.Provisioning1.conf, the DPS emulator, and the real dpsd with
// DBUS_SYSTEM_BUS_ADDRESS pointing at that bus. Clients are busctl and dpsctl, as a user would
// run them; the unprivileged ones run as nobody through setpriv.
#include <gtest/gtest.h>

#include <algorithm>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "dpsd_fixture.hpp"
#include "support/private_bus.hpp"
#include "support/wait.hpp"

namespace dpsd::test {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

// Every <method>, <property>, <signal> of io.dpsd.Provisioning1 in an introspection document,
// one normalized line each (attribute order and whitespace do not matter). A property without
// an EmitsChangedSignal annotation gets the D-Bus default, "true"; other annotations are not
// part of the contract compared here.
std::vector<std::string> interface_members(const std::string& xml) {
  const auto begin = xml.find("<interface name=\"io.dpsd.Provisioning1\"");
  if (begin == std::string::npos) return {"<no interface io.dpsd.Provisioning1>"};
  const auto end = xml.find("</interface>", begin);
  const std::string block = xml.substr(begin, end - begin);
  // Drop comments so that a commented-out member cannot count.
  const std::string body = std::regex_replace(block, std::regex("<!--[\\s\\S]*?-->"), "");

  const std::regex tag(R"(<(/?)(method|property|signal|arg|annotation)\b([^>]*?)(/?)>)");
  const std::regex attr(R"re((\w+)="([^"]*)")re");
  std::vector<std::string> members;
  std::string current_kind, current;
  std::string emits;
  auto finish = [&] {
    if (current_kind == "property") current += " emits=" + (emits.empty() ? "true" : emits);
    members.push_back(current);
    current_kind.clear();
    current.clear();
    emits.clear();
  };
  for (auto it = std::sregex_iterator(body.begin(), body.end(), tag); it != std::sregex_iterator();
       ++it) {
    const std::smatch& m = *it;
    const bool closing = m[1] == "/";
    const std::string kind = m[2];
    const bool self_closing = m[4] == "/";
    std::map<std::string, std::string> attrs;
    const std::string attr_text = m[3];
    for (auto a = std::sregex_iterator(attr_text.begin(), attr_text.end(), attr);
         a != std::sregex_iterator(); ++a) {
      attrs[(*a)[1]] = (*a)[2];
    }
    if (kind == "arg") {
      const std::string dir =
          attrs.count("direction") ? attrs["direction"] : (current_kind == "signal" ? "" : "in");
      current += " arg(" + attrs["type"] + " " + dir + ")";
    } else if (kind == "annotation") {
      if (attrs["name"] == "org.freedesktop.DBus.Property.EmitsChangedSignal") {
        emits = attrs["value"];
      }
    } else if (closing) {
      finish();
    } else {
      current_kind = kind;
      current = kind + " " + attrs["name"];
      if (kind == "property") current += " " + attrs["type"] + " " + attrs["access"];
      if (self_closing) finish();
    }
  }
  std::sort(members.begin(), members.end());
  return members;
}

class Dbus : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dpsd_gid_ = ensure_dpsd_group();  // before the bus reads the policy that names it
    bus_ = std::make_unique<PrivateBus>();
    emulator_ = std::make_unique<DpsEmulator>(EmulatorOptions{});
  }
  static void TearDownTestSuite() {
    emulator_.reset();
    bus_.reset();
  }

  void TearDown() override {
    if (dpsd_ && HasFailure()) {
      std::cerr << "--- dpsd stderr\n" << dpsd_->stderr_text() << "---\n";
    }
    dpsd_.reset();
  }

  static std::string address() { return bus_->address(); }
  DpsEmulator& emulator() { return *emulator_; }

  std::unique_ptr<Device> enroll(json scenario = {{"name", "immediate"}}) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string regid = std::string("bus-") + info->name();
    for (auto& c : regid) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto device = std::make_unique<Device>(emulator(), regid);
    emulator().set_device(regid, device->key(), std::move(scenario));
    return device;
  }

  ProcessOptions bus_env() const {
    ProcessOptions opts;
    opts.env["DBUS_SYSTEM_BUS_ADDRESS"] = address();
    return opts;
  }

  void start_dpsd(const Device& device) {
    dpsd_ = std::make_unique<Process>(
        std::vector<std::string>{DPSD_BINARY, "--config", device.config_path().string(), "-v"},
        bus_env());
  }

  CommandResult busctl(std::vector<std::string> args, std::vector<std::string> prefix = {}) const {
    std::vector<std::string> argv = std::move(prefix);
    argv.push_back("busctl");
    argv.push_back("--address=" + address());
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, 20s);
  }

  CommandResult dpsctl(std::vector<std::string> args, std::vector<std::string> prefix = {},
                       std::chrono::milliseconds timeout = 60s) const {
    std::vector<std::string> argv = std::move(prefix);
    argv.push_back(DPSCTL_BINARY);
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, timeout, bus_env());
  }

  static std::vector<std::string> as_nobody() {
    return {"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"};
  }
  static std::vector<std::string> as_nobody_in_dpsd() {
    return {"setpriv", "--reuid=nobody", "--regid=nogroup",
            "--groups=" + std::to_string(dpsd_gid_)};
  }

  // One property via busctl's JSON output; null when it cannot be read.
  json property(const std::string& name) const {
    const CommandResult r = busctl({"--json=short", "get-property", "io.dpsd.Provisioning1",
                                    "/io/dpsd/Provisioning1", "io.dpsd.Provisioning1", name});
    if (r.exit_code != 0) return nullptr;
    return json::parse(r.out)["data"];
  }

  // Bounded: fails the test with dpsd's stderr when the property does not reach the value.
  void expect_property_soon(const std::string& name, const json& value,
                            std::chrono::milliseconds timeout = 30s) {
    json last;
    const bool ok = wait_until(
        [&] {
          last = property(name);
          return last == value;
        },
        timeout, 100ms);
    ASSERT_TRUE(ok) << name << " did not become " << value.dump() << " within " << timeout.count()
                    << " ms; last " << last.dump();
  }

  std::size_t registers(const std::string& regid) const {
    std::size_t n = 0;
    for (const auto& e : emulator_->events("publish", regid)) {
      if (e.value("topic", "").find("iotdps-register") != std::string::npos) ++n;
    }
    return n;
  }

  static gid_t dpsd_gid_;
  static std::unique_ptr<PrivateBus> bus_;
  static std::unique_ptr<DpsEmulator> emulator_;
  std::unique_ptr<Process> dpsd_;
};

gid_t Dbus::dpsd_gid_ = 0;
std::unique_ptr<PrivateBus> Dbus::bus_;
std::unique_ptr<DpsEmulator> Dbus::emulator_;

std::string describe(const CommandResult& r) {
  return "exit " + std::to_string(r.exit_code) + "\n--- stdout\n" + r.out + "--- stderr\n" + r.err;
}

TEST_F(Dbus, IntrospectionMatchesTheXmlContract) {
  auto device = enroll();
  start_dpsd(*device);
  expect_property_soon("State", "provisioned");
  const CommandResult r =
      busctl({"introspect", "--xml-interface", "io.dpsd.Provisioning1", "/io/dpsd/Provisioning1"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const auto live = interface_members(r.out);
  const auto contract =
      interface_members(read_file(DPSD_SOURCE_DIR "/dbus/io.dpsd.Provisioning1.xml"));
  EXPECT_EQ(live, contract) << "the running object and dbus/io.dpsd.Provisioning1.xml differ\n"
                            << r.out;
  EXPECT_EQ(contract.size(), 15u);  // 13 properties, 2 methods
}

TEST_F(Dbus, PropertiesAfterProvisioningReadableByAnyone) {
  auto device = enroll();
  start_dpsd(*device);
  expect_property_soon("State", "provisioned");
  EXPECT_EQ(property("AssignedHub"), "hub-a.emulator.test");
  EXPECT_EQ(property("DeviceId"), device->regid());
  EXPECT_EQ(property("RegistrationId"), device->regid());
  EXPECT_EQ(property("IdScope"), emulator().scope());
  EXPECT_EQ(property("Substatus"), "initialAssignment");
  EXPECT_EQ(property("Source"), "dps");
  EXPECT_EQ(property("LastError"), "");
  EXPECT_GE(property("Attempts").get<std::uint32_t>(), 1u);
  const auto provisioned = property("ProvisionedUSec").get<std::uint64_t>();
  EXPECT_GT(provisioned, 1700000000ull * 1000000);
  EXPECT_GT(property("LastAttemptUSec").get<std::uint64_t>(), 0u);

  // Reading is open to every local user.
  const CommandResult r = busctl({"get-property", "io.dpsd.Provisioning1", "/io/dpsd/Provisioning1",
                                  "io.dpsd.Provisioning1", "State", "AssignedHub"},
                                 as_nobody());
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(r.out, "s \"provisioned\"\ns \"hub-a.emulator.test\"\n");
}

TEST_F(Dbus, ReprovisionToAnotherHubEmitsPropertiesChangedAndFilesFollow) {
  auto device = enroll({{"name", "reassign"}});
  start_dpsd(*device);
  expect_property_soon("AssignedHub", "hub-a.emulator.test");
  expect_property_soon("State", "provisioned");

  // Every message on the bus, as JSON lines; ready once it has seen our Ping.
  Process monitor({"busctl", "--address=" + address(), "--json=short", "monitor"});
  ASSERT_TRUE(wait_until(
      [&] {
        busctl({"call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                "GetId"});
        return monitor.stdout_text().find("\"GetId\"") != std::string::npos;
      },
      10s, 200ms))
      << "busctl monitor did not start: " << monitor.stderr_text();

  const CommandResult call = busctl({"call", "io.dpsd.Provisioning1", "/io/dpsd/Provisioning1",
                                     "io.dpsd.Provisioning1", "Reprovision"});
  ASSERT_EQ(call.exit_code, 0) << describe(call);
  expect_property_soon("AssignedHub", "hub-b.emulator.test");
  expect_property_soon("State", "provisioned");
  EXPECT_EQ(property("Substatus"), "reprovisionedToInitialAssignment");

  // What the bus carried: State left provisioned and came back, the hub moved, all as signals.
  std::vector<json> changes;
  ASSERT_TRUE(wait_until(
      [&] {
        changes.clear();
        std::istringstream lines(monitor.stdout_text());
        for (std::string line; std::getline(lines, line);) {
          const json m = json::parse(line, nullptr, false);
          if (m.is_discarded() || m.value("member", "") != "PropertiesChanged" ||
              m.value("path", "") != "/io/dpsd/Provisioning1") {
            continue;
          }
          changes.push_back(m["payload"]["data"][1]);
        }
        for (const auto& c : changes) {
          if (c.contains("AssignedHub") && c["AssignedHub"]["data"] == "hub-b.emulator.test") {
            return true;
          }
        }
        return false;
      },
      10s))
      << "no PropertiesChanged with AssignedHub=hub-b; monitor saw:\n"
      << monitor.stdout_text();
  // dpsd keeps State=provisioned while it confirms a valid assignment; the attempt shows as
  // LastAttemptUSec, and its result as Substatus and ProvisionedUSec changes.
  std::set<std::string> changed;
  for (const auto& c : changes) {
    for (const auto& [name, value] : c.items()) changed.insert(name);
    if (c.contains("State")) {
      EXPECT_NE(c["State"]["data"], "failed") << c.dump();
    }
  }
  for (const char* name : {"LastAttemptUSec", "AssignedHub", "Substatus", "ProvisionedUSec"}) {
    EXPECT_EQ(changed.count(name), 1u) << name << " not in any PropertiesChanged\n"
                                       << monitor.stdout_text();
  }

  const json state = device->state();
  EXPECT_EQ(state["assignedHub"], "hub-b.emulator.test");
  EXPECT_EQ(state["substatus"], "reprovisionedToInitialAssignment");
  EXPECT_NE(device->env_text().find("IOTHUB_HOSTNAME=hub-b.emulator.test\n"), std::string::npos)
      << device->env_text();
}

TEST_F(Dbus, UnprivilegedCallerIsRefusedButGroupDpsdIsAllowed) {
  auto device = enroll();
  start_dpsd(*device);
  expect_property_soon("State", "provisioned");
  const std::size_t before = registers(device->regid());

  for (const char* method : {"Reprovision", "GetConnectionInfo"}) {
    const CommandResult r = busctl({"call", "io.dpsd.Provisioning1", "/io/dpsd/Provisioning1",
                                    "io.dpsd.Provisioning1", method},
                                   as_nobody());
    EXPECT_NE(r.exit_code, 0) << method << " " << describe(r);
    EXPECT_NE(r.err.find("denied"), std::string::npos) << method << " " << describe(r);
    EXPECT_EQ(r.out.find(device->key()), std::string::npos);
  }
  const CommandResult refused = dpsctl({"reprovision"}, as_nobody());
  EXPECT_EQ(refused.exit_code, 5) << describe(refused);
  EXPECT_NE(refused.err.find("access denied"), std::string::npos) << refused.err;

  // Same uid, with group dpsd as a supplementary group.
  const CommandResult info =
      busctl({"--json=short", "call", "io.dpsd.Provisioning1", "/io/dpsd/Provisioning1",
              "io.dpsd.Provisioning1", "GetConnectionInfo"},
             as_nobody_in_dpsd());
  ASSERT_EQ(info.exit_code, 0) << describe(info);
  const json dict = json::parse(info.out)["data"][0];
  EXPECT_EQ(dict["AssignedHub"]["data"], "hub-a.emulator.test");
  EXPECT_EQ(dict["DeviceId"]["data"], device->regid());
  EXPECT_EQ(dict["AuthType"]["data"], "symmetric_key");
  EXPECT_EQ(dict["SymmetricKey"]["data"], device->key());

  const CommandResult allowed =
      dpsctl({"reprovision", "--wait", "--timeout", "30"}, as_nobody_in_dpsd());
  EXPECT_EQ(allowed.exit_code, 0) << describe(allowed);
  EXPECT_EQ(registers(device->regid()), before + 1);
}

// With a bus policy that lets every call through, dpsd's own check (the caller's credentials,
// asked of the bus) still refuses.
TEST_F(Dbus, HandlerRefusesWithoutTheBusPolicy) {
  PrivateBus open_bus(/*include_project_policy=*/false);
  auto device = enroll();
  ProcessOptions opts;
  opts.env["DBUS_SYSTEM_BUS_ADDRESS"] = open_bus.address();
  Process dpsd({DPSD_BINARY, "--config", device->config_path().string(), "-v"}, opts);
  auto call = [&](const std::string& method, std::vector<std::string> prefix) {
    prefix.insert(prefix.end(),
                  {"busctl", "--address=" + open_bus.address(), "call", "io.dpsd.Provisioning1",
                   "/io/dpsd/Provisioning1", "io.dpsd.Provisioning1", method});
    return run_command(prefix, 20s);
  };
  ASSERT_TRUE(wait_until([&] { return call("GetConnectionInfo", {}).exit_code == 0; }, 30s, 100ms))
      << dpsd.stderr_text();
  for (const char* method : {"Reprovision", "GetConnectionInfo"}) {
    const CommandResult r = call(method, as_nobody());
    EXPECT_NE(r.exit_code, 0) << describe(r);
    EXPECT_NE(r.err.find("Access denied"), std::string::npos) << describe(r);
    // Refused by dpsd itself (the bus let the call through), naming the caller's uid.
    EXPECT_TRUE(wait_until(
        [&] {
          return dpsd.stderr_text().find(std::string("refused ") + method + " to uid 65534") !=
                 std::string::npos;
        },
        5s))
        << dpsd.stderr_text();
  }
  ProcessOptions nobody_env = opts;
  const CommandResult refused = run_command({"setpriv", "--reuid=nobody", "--regid=nogroup",
                                             "--clear-groups", DPSCTL_BINARY, "reprovision"},
                                            20s, nobody_env);
  EXPECT_EQ(refused.exit_code, 5) << describe(refused);
  EXPECT_NE(refused.err.find("Reprovision requires root or membership of group dpsd"),
            std::string::npos)
      << refused.err;
  EXPECT_EQ(call("GetConnectionInfo", as_nobody_in_dpsd()).exit_code, 0);
}

TEST_F(Dbus, DpsctlStatusHumanAndJson) {
  auto device = enroll();
  start_dpsd(*device);
  expect_property_soon("State", "provisioned");
  const CommandResult j = dpsctl({"status", "--json"}, as_nobody());
  ASSERT_EQ(j.exit_code, 0) << describe(j);
  const json status = json::parse(j.out);
  EXPECT_EQ(status["State"], "provisioned");
  EXPECT_EQ(status["AssignedHub"], "hub-a.emulator.test");
  EXPECT_EQ(status["DeviceId"], device->regid());
  EXPECT_EQ(status["Source"], "dps");
  EXPECT_GT(status["ProvisionedUSec"].get<std::uint64_t>(), 0u);

  const CommandResult h = dpsctl({"status"});
  ASSERT_EQ(h.exit_code, 0) << describe(h);
  EXPECT_NE(h.out.find("State: provisioned"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("Hub: hub-a.emulator.test"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find(" ago)"), std::string::npos) << h.out;
}

TEST_F(Dbus, DpsctlWithoutDpsd) {
  const CommandResult status = dpsctl({"status"});
  EXPECT_EQ(status.exit_code, 4) << describe(status);
  EXPECT_NE(status.err.find("dpsd is not running"), std::string::npos) << status.err;
  const CommandResult wait = dpsctl({"wait", "--timeout", "1"});
  EXPECT_EQ(wait.exit_code, 3) << describe(wait);
  EXPECT_NE(wait.err.find("timed out after 1 s"), std::string::npos) << wait.err;
  EXPECT_NE(wait.err.find("dpsd is not running"), std::string::npos) << wait.err;
  EXPECT_EQ(dpsctl({"bogus"}).exit_code, 2);
  EXPECT_EQ(dpsctl({"wait", "--timeout", "x"}).exit_code, 2);
  const CommandResult help = dpsctl({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("5  access denied"), std::string::npos) << help.out;
}

TEST_F(Dbus, DpsctlWaitSeesDpsdAppearAndProvision) {
  auto device = enroll({{"name", "normal"}, {"polls", 1}, {"retry_after", 1}});
  // Started before dpsd: it must notice the name appear (NameOwnerChanged), then the state.
  Process wait({DPSCTL_BINARY, "wait", "--timeout", "30"}, bus_env());
  std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(wait.running()) << wait.stderr_text();
  start_dpsd(*device);
  const auto code = wait.wait_for_exit(40s);
  ASSERT_TRUE(code.has_value()) << "dpsctl wait did not return within 40 s";
  EXPECT_EQ(*code, 0) << wait.stderr_text();
  EXPECT_EQ(property("State"), "provisioned");
}

TEST_F(Dbus, DpsctlWaitTimesOutWhileRetryingAndFailsWhenRefused) {
  auto device = enroll({{"name", "throttle"}, {"status", 503}, {"times", 1000}});
  start_dpsd(*device);
  expect_property_soon("Attempts", json(1u));
  const CommandResult timeout = dpsctl({"wait", "--timeout", "2"});
  EXPECT_EQ(timeout.exit_code, 3) << describe(timeout);
  EXPECT_NE(timeout.err.find("timed out after 2 s"), std::string::npos) << timeout.err;

  emulator().set_scenario(device->regid(), {{"name", "unauthorized"}});
  const CommandResult refused = dpsctl({"wait", "--timeout", "60"});
  EXPECT_EQ(refused.exit_code, 1) << describe(refused);
  EXPECT_NE(refused.err.find("DPS refused"), std::string::npos) << refused.err;
}

TEST_F(Dbus, DpsctlReprovisionWait) {
  auto device = enroll({{"name", "normal"}, {"polls", 1}, {"retry_after", 1}});
  start_dpsd(*device);
  expect_property_soon("State", "provisioned");
  const auto provisioned = property("ProvisionedUSec").get<std::uint64_t>();
  const std::size_t before = registers(device->regid());
  const CommandResult r = dpsctl({"reprovision", "--wait", "--timeout", "30"});
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(property("State"), "provisioned");
  EXPECT_EQ(registers(device->regid()), before + 1);
  EXPECT_GE(property("ProvisionedUSec").get<std::uint64_t>(), provisioned);
}

TEST_F(Dbus, ConcurrentReprovisionCallsMakeOneRegistration) {
  // A registration that takes a while (two polls a second apart), so the calls overlap it.
  auto device = enroll({{"name", "normal"}, {"polls", 2}, {"retry_after", 1}});
  start_dpsd(*device);
  expect_property_soon("State", "provisioned", 40s);
  const std::size_t before = registers(device->regid());
  std::vector<std::unique_ptr<Process>> calls;
  for (int i = 0; i < 5; ++i) {
    calls.push_back(std::make_unique<Process>(std::vector<std::string>{
        "busctl", "--address=" + address(), "call", "io.dpsd.Provisioning1",
        "/io/dpsd/Provisioning1", "io.dpsd.Provisioning1", "Reprovision"}));
  }
  for (auto& call : calls) {
    const auto code = call->wait_for_exit(20s);
    ASSERT_TRUE(code.has_value()) << "busctl call Reprovision did not return within 20 s";
    EXPECT_EQ(*code, 0) << call->stderr_text();
  }
  expect_property_soon("State", "provisioned", 40s);
  // Let a second registration, if one were wrongly started, reach the emulator.
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(registers(device->regid()), before + 1);
}

// One property of dpsd on the bus at `address`, via busctl; null when it cannot be read.
json property_on(const std::string& address, const std::string& name) {
  const CommandResult r = run_command(
      {"busctl", "--address=" + address, "--json=short", "get-property", "io.dpsd.Provisioning1",
       "/io/dpsd/Provisioning1", "io.dpsd.Provisioning1", name},
      20s);
  if (r.exit_code != 0) return nullptr;
  return json::parse(r.out)["data"];
}

std::uint64_t realtime_usec() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

// Issue 10 item 4: dbus-daemon goes away (a crash, a restart) and comes back at the same
// address. dpsd must notice, reconnect with backoff, export the object and own the name again.
TEST_F(Dbus, ReconnectsWhenTheBusDaemonRestarts) {
  PrivateBus bus;  // its own bus: the suite's stays up for the other tests
  auto device = enroll();
  ProcessOptions opts;
  opts.env["DBUS_SYSTEM_BUS_ADDRESS"] = bus.plain_address();
  Process dpsd({DPSD_BINARY, "--config", device->config_path().string(), "-v"}, opts);
  ASSERT_TRUE(wait_until([&] { return property_on(bus.plain_address(), "State") == "provisioned"; },
                         30s, 100ms))
      << "dpsd did not show State=provisioned on the first bus within 30 s\n"
      << dpsd.stderr_text();

  bus.kill();
  ASSERT_TRUE(wait_until(
      [&] {
        return dpsd.stderr_text().find("D-Bus connection lost; reconnecting in") !=
               std::string::npos;
      },
      10s))
      << "dpsd did not log the lost bus connection within 10 s\n"
      << dpsd.stderr_text();
  bus.start();  // same socket path, new guid: a restarted dbus-daemon

  json state, hub;
  const bool back = wait_until(
      [&] {
        state = property_on(bus.plain_address(), "State");
        hub = property_on(bus.plain_address(), "AssignedHub");
        return state == "provisioned" && hub == "hub-a.emulator.test";
      },
      40s, 200ms);
  ASSERT_TRUE(back) << "dpsd was not back on the restarted bus within 40 s (State " << state.dump()
                    << ", AssignedHub " << hub.dump() << ")\n"
                    << dpsd.stderr_text();
  EXPECT_TRUE(dpsd.running());
  EXPECT_NE(dpsd.stderr_text().find("D-Bus: reconnected, name io.dpsd.Provisioning1 acquired"),
            std::string::npos)
      << dpsd.stderr_text();
  EXPECT_EQ(property_on(bus.plain_address(), "DeviceId"), device->regid());
  // The methods came back too, with their credential check (root here).
  const CommandResult info =
      run_command({"busctl", "--address=" + bus.plain_address(), "--json=short", "call",
                   "io.dpsd.Provisioning1", "/io/dpsd/Provisioning1", "io.dpsd.Provisioning1",
                   "GetConnectionInfo"},
                  20s);
  ASSERT_EQ(info.exit_code, 0) << describe(info);
  EXPECT_EQ(json::parse(info.out)["data"][0]["DeviceId"]["data"], device->regid());
}

// dpsd started before dbus-daemon (an ordering mistake, or a bus that is slow to come up) must
// get on the bus once it appears, not run without it for good.
TEST_F(Dbus, StartedBeforeTheBusGetsOnItWhenItAppears) {
  PrivateBus bus(/*include_project_policy=*/true, /*start_now=*/false);
  auto device = enroll();
  ProcessOptions opts;
  opts.env["DBUS_SYSTEM_BUS_ADDRESS"] = bus.plain_address();
  Process dpsd({DPSD_BINARY, "--config", device->config_path().string(), "-v"}, opts);
  ASSERT_TRUE(wait_until(
      [&] {
        return dpsd.stderr_text().find("D-Bus: cannot connect to the system bus") !=
               std::string::npos;
      },
      10s))
      << "dpsd did not log the missing bus within 10 s\n"
      << dpsd.stderr_text();
  EXPECT_NE(dpsd.stderr_text().find("reconnecting in"), std::string::npos) << dpsd.stderr_text();
  bus.start();
  json state;
  ASSERT_TRUE(wait_until(
      [&] {
        state = property_on(bus.plain_address(), "State");
        return state == "provisioned";
      },
      40s, 200ms))
      << "dpsd did not appear on the bus with State=provisioned within 40 s (State " << state.dump()
      << ")\n"
      << dpsd.stderr_text();
  EXPECT_NE(dpsd.stderr_text().find("D-Bus: connected, name io.dpsd.Provisioning1 acquired"),
            std::string::npos)
      << dpsd.stderr_text();
}

// Issue 10 item 1: DPS's error text is hostile. Neither the bus nor dpsctl's terminal output may
// carry its ESC, BEL or line break raw.
TEST_F(Dbus, HostileErrorTextIsEscapedOnTheBusAndInDpsctl) {
  const std::string hostile = "\x1b]0;pwned\x07\nWATCHDOG=1";
  auto device = enroll({{"name", "unauthorized"}, {"message", hostile}});
  start_dpsd(*device);
  expect_property_soon("State", "failed");
  const json last_error = property("LastError");
  ASSERT_TRUE(last_error.is_string()) << last_error.dump();
  const std::string text = last_error.get<std::string>();
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << text;
  EXPECT_EQ(text.find('\x07'), std::string::npos) << text;
  EXPECT_EQ(text.find('\n'), std::string::npos) << text;
  // Escaped once, by the one sanitizer: readable, and not "\\e" (escaped twice).
  EXPECT_NE(text.find("\\e]0;pwned\\x07\\nWATCHDOG=1"), std::string::npos) << text;
  EXPECT_EQ(text.find("\\\\e"), std::string::npos) << "escaped twice: " << text;

  const CommandResult human = dpsctl({"status"});
  ASSERT_EQ(human.exit_code, 0) << describe(human);
  EXPECT_EQ(human.out.find('\x1b'), std::string::npos) << human.out;
  EXPECT_EQ(human.out.find('\x07'), std::string::npos) << human.out;
  // Every line is one "Label: value": the error's line break did not start a line of its own.
  std::istringstream lines(human.out);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_TRUE(std::regex_search(line, std::regex(R"(^ *[A-Z][a-z ]+: )"))) << line;
  }
  EXPECT_NE(human.out.find("pwned"), std::string::npos) << human.out;

  const CommandResult j = dpsctl({"status", "--json"});
  ASSERT_EQ(j.exit_code, 0) << describe(j);
  for (const char c : j.out) {
    const auto byte = static_cast<unsigned char>(c);
    EXPECT_TRUE(byte == '\n' || (byte >= 0x20 && byte < 0x7f))
        << "raw byte " << static_cast<int>(byte) << " in dpsctl status --json";
  }
  const json parsed = json::parse(j.out, nullptr, false);
  ASSERT_FALSE(parsed.is_discarded()) << "dpsctl status --json is not JSON:\n" << j.out;
  EXPECT_EQ(parsed["LastError"], text);
}

// Issue 10 item 13: a burst of Reprovision calls makes at most one registration now and one at
// the end of the minimum interval; every call returns at once with the time its registration
// runs.
TEST_F(Dbus, ReprovisionBurstIsCoalescedAndRateLimited) {
  auto device = enroll();
  start_dpsd(*device);
  expect_property_soon("State", "provisioned");
  const std::size_t before = registers(device->regid());

  const auto burst_start = std::chrono::steady_clock::now();
  std::uint64_t latest_start = 0;
  for (int i = 0; i < 40; ++i) {
    const CommandResult r =
        busctl({"--json=short", "call", "io.dpsd.Provisioning1", "/io/dpsd/Provisioning1",
                "io.dpsd.Provisioning1", "Reprovision"});
    const std::uint64_t now = realtime_usec();
    ASSERT_EQ(r.exit_code, 0) << "call " << i << ": " << describe(r);
    const json reply = json::parse(r.out, nullptr, false);
    ASSERT_TRUE(!reply.is_discarded() && reply["type"] == "t") << r.out;
    const auto start = reply["data"][0].get<std::uint64_t>();
    EXPECT_LE(start, now + 10'000'000) << "call " << i << " was scheduled more than 10 s ahead";
    EXPECT_GT(start, 1700000000ull * 1000000) << "call " << i;
    latest_start = std::max(latest_start, start);
  }
  const auto burst = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - burst_start);
  std::cout << "40 Reprovision calls took " << burst.count() << " ms\n";

  // Wait for the last scheduled registration to have run and succeeded.
  json provisioned;
  ASSERT_TRUE(wait_until(
      [&] {
        provisioned = property("ProvisionedUSec");
        return provisioned.is_number() && provisioned.get<std::uint64_t>() >= latest_start;
      },
      40s, 200ms))
      << "no registration finished after the last scheduled start " << latest_start
      << " within 40 s (ProvisionedUSec " << provisioned.dump() << ")";
  std::this_thread::sleep_for(1s);  // let a wrongly started extra registration reach the log
  // One now, then one per started 10 s interval of the burst (2 when it took under 10 s).
  const std::size_t allowed = 1 + static_cast<std::size_t>((burst.count() + 9999) / 10000);
  const std::size_t made = registers(device->regid()) - before;
  EXPECT_GE(made, 1u);
  EXPECT_LE(made, allowed) << "40 Reprovision calls in " << burst.count() << " ms made " << made
                           << " registrations";
}

// dpsctl says when its registration runs: now, or at the end of the rate limit's interval, and
// --wait then waits for that deferred registration.
TEST_F(Dbus, DpsctlReprovisionSaysWhenItRunsAndWaitsForADeferredOne) {
  auto device = enroll();
  start_dpsd(*device);
  expect_property_soon("State", "provisioned");
  const std::size_t before = registers(device->regid());
  const auto initial = property("ProvisionedUSec").get<std::uint64_t>();

  const CommandResult now = dpsctl({"reprovision"});
  ASSERT_EQ(now.exit_code, 0) << describe(now);
  EXPECT_EQ(now.out, "re-provisioning now\n");
  // That registration finished (so the next call is deferred, not joined to it).
  json first;
  ASSERT_TRUE(wait_until(
      [&] {
        first = property("ProvisionedUSec");
        return first.is_number() && first.get<std::uint64_t>() != initial;
      },
      30s, 100ms))
      << "the requested registration did not finish within 30 s (ProvisionedUSec " << first.dump()
      << ")";

  const CommandResult deferred = dpsctl({"reprovision", "--wait", "--timeout", "40"});
  ASSERT_EQ(deferred.exit_code, 0) << describe(deferred);
  const std::regex said(
      R"(^re-provisioning at .+ \(in ([0-9]+) s: Reprovision is limited to one every 10 s\)\n$)");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(deferred.out, m, said)) << deferred.out;
  EXPECT_LE(std::stoi(m[1]), 10) << deferred.out;
  // --wait returned once the deferred registration had succeeded, not at the first one's.
  EXPECT_GT(property("ProvisionedUSec").get<std::uint64_t>(), first.get<std::uint64_t>());
  EXPECT_EQ(registers(device->regid()), before + 2);
}

}  // namespace
}  // namespace dpsd::test
