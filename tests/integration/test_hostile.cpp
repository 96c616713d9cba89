// A hostile DPS (issue 10): every field dpsd reads from a reply, filled with shell
// metacharacters, control characters and over-long values, oversized replies, QoS 2 and
// unsolicited floods, and an operation that never ends. Each case starts from a device that was
// provisioned normally; afterwards its state.json and iothub.env are byte-identical, dpsd has
// ended the attempt as a transient failure (`--once` exits 3; the daemon lives on), and it wrote
// at most 1 MiB into its state and runtime directories.
#include <gtest/gtest.h>

#include <algorithm>

#include "daemon_run.hpp"
#include "dpsd_fixture.hpp"
#include "support/wait.hpp"

namespace dpsd::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr std::uintmax_t kMaxWritten = 1024 * 1024;

std::string labels(std::size_t total) {
  std::string out;
  while (out.size() < total) out += std::string(49, 'h') + ".";
  out.resize(total - 8);
  return out + ".example";
}

class Hostile : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EmulatorOptions opts;
    opts.allow_qos2 = true;  // for qos2_flood: DPS never sends QoS 2, a hostile server may
    emulator_ = std::make_unique<DpsEmulator>(opts);
  }
  static void TearDownTestSuite() { emulator_.reset(); }
  DpsEmulator& emulator() { return *emulator_; }

  // A device provisioned normally, then given the hostile scenario for its next connection.
  std::unique_ptr<Device> provisioned(json hostile, const std::string& suffix = "") {
    auto device =
        enroll_device(emulator(), regid_for_this_test("ho-", suffix), {{"name", "immediate"}});
    const RunResult r = device->once();
    EXPECT_EQ(r.exit_code, 0) << describe(r);
    good_state_ = device->state_text();
    good_env_ = device->env_text();
    emulator().set_scenario(device->regid(), std::move(hostile));
    return device;
  }

  // The daemon then asks DPS again at start although it serves the cached assignment.
  static void confirm_on_start(Device& device) {
    device.write_config("", "individual", {}, {}, "reprovision_on_start = \"always\"\n");
  }

  void expect_untouched(const Device& device) {
    EXPECT_EQ(device.state_text(), good_state_) << "a hostile reply changed state.json";
    EXPECT_EQ(device.env_text(), good_env_) << "a hostile reply changed iothub.env";
    const auto written = bytes_under(device.dir() / "state") + bytes_under(device.dir() / "run");
    EXPECT_LE(written, kMaxWritten) << "state and runtime directories hold " << written << " bytes";
  }

  // `--once --force`, bounded; the attempt must end as a transient failure (exit 3).
  RunResult once_hostile(const Device& device, const std::string& timeout_s = "3") {
    const RunResult r = device.run({"--once", "--force", "--timeout", timeout_s}, 40s);
    EXPECT_EQ(r.exit_code, 3) << "not a transient failure\n" << describe(r).substr(0, 8000);
    return r;
  }

  static std::unique_ptr<DpsEmulator> emulator_;
  std::string good_state_;
  std::string good_env_;
};

std::unique_ptr<DpsEmulator> Hostile::emulator_;

struct FieldCase {
  const char* name;
  json scenario;
  std::vector<std::string> named;  // LastError names one of these
};

void PrintTo(const FieldCase& c, std::ostream* os) {
  *os << c.name;
}

class HostileField : public Hostile, public ::testing::WithParamInterface<FieldCase> {};

TEST_P(HostileField, MalformedReplyIsTransientAndChangesNothing) {
  auto device = provisioned(GetParam().scenario);
  const RunResult r = once_hostile(*device);
  expect_untouched(*device);
  const bool named = std::any_of(GetParam().named.begin(), GetParam().named.end(),
                                 [&](const std::string& n) { return r.err.find(n) != r.err.npos; });
  EXPECT_TRUE(named) << "the error does not name the field\n" << r.err.substr(0, 8000);
}

json hub(const std::string& value) {
  return {{"name", "immediate"}, {"patch", {{"registrationState", {{"assignedHub", value}}}}}};
}
json device_id(const std::string& value) {
  return {{"name", "immediate"}, {"patch", {{"registrationState", {{"deviceId", value}}}}}};
}

INSTANTIATE_TEST_SUITE_P(
    Fields, HostileField,
    ::testing::Values(
        FieldCase{"HubShell", hub("evil$(id)x.example"), {"assignedHub"}},
        FieldCase{"HubNewline", hub("hub\nWATCHDOG=trigger"), {"assignedHub"}},
        FieldCase{"Hub300", hub(labels(300)), {"assignedHub"}},
        // Over DPS's 96 KB message limit: the size cap may refuse it before the field check.
        FieldCase{"Hub200k",
                  {{"name", "oversize"}, {"bytes", 200000}, {"field", "assignedHub"}},
                  {"assignedHub", "protocol error"}},
        FieldCase{"HubLabel64", hub(std::string(64, 'l') + ".example.net"), {"assignedHub"}},
        FieldCase{"DeviceId129", device_id(std::string(129, 'd')), {"deviceId"}},
        FieldCase{"DeviceIdControl", device_id("dev\x01ice"), {"deviceId"}},
        FieldCase{"DeviceIdSpace", device_id("dev ice"), {"deviceId"}},
        FieldCase{"OperationId10k",
                  {{"name", "normal"},
                   {"polls", 1},
                   {"retry_after", 1},
                   {"accept_patch", {{"operationId", std::string(10000, '7')}}}},
                  {"operationId"}}),
    [](const auto& info) { return std::string(info.param.name); });

// IoT Hub's documented deviceId alphabet includes $ ( ) (learn.microsoft.com/azure/iot-hub/
// iot-hub-devguide-identity-registry, "Device identity properties": alphanumerics plus
// - . % _ * ? ! ( ) , : = @ $ '), so "dev$(id)" is a valid id: it is accepted, and reaches
// iothub.env quoted so that no consumer's shell or systemd expands it.
TEST_F(Hostile, DeviceIdWithShellCharactersIsValidAndQuoted) {
  auto device = provisioned(device_id("dev$(id)"));
  const RunResult r = device->run({"--once", "--force", "--timeout", "3"}, 40s);
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(device->state()["deviceId"], "dev$(id)");
  EXPECT_NE(device->env_text().find("IOTHUB_DEVICE_ID=\"dev\\$(id)\"\n"), std::string::npos)
      << device->env_text();
}

// The daemon serving a cached assignment: a hostile confirmation leaves it serving the cache.
TEST_F(Hostile, DaemonKeepsServingTheCacheAfterAHostileHub) {
  auto device = provisioned(hub("evil$(id)x.example"));
  confirm_on_start(*device);
  NotifyCapture notify(device->dir() / "notify.sock");
  auto dpsd = start_daemon(*device, notify);
  EXPECT_TRUE(wait_until(
      [&] {
        return notify.any_status(
            [](const std::string& s) { return s.find("assignedHub") != std::string::npos; });
      },
      15s))
      << "no STATUS names assignedHub:\n"
      << notify.all_statuses() << dpsd->stderr_text();
  EXPECT_TRUE(dpsd->running());
  expect_untouched(*device);
}

// Issue 10 §1: a 401 message must not become extra notify assignments.
TEST_F(Hostile, ErrorMessageCannotInjectNotifyLines) {
  auto device = provisioned({{"name", "unauthorized"}, {"message", "x\nWATCHDOG=trigger\nX="}});
  confirm_on_start(*device);
  NotifyCapture notify(device->dir() / "notify.sock");
  auto dpsd = start_daemon(*device, notify);
  ASSERT_TRUE(wait_until(
      [&] {
        return notify.any_status(
            [](const std::string& s) { return s.find("401") != std::string::npos; });
      },
      15s))
      << "no STATUS with the 401:\n"
      << notify.all_statuses() << dpsd->stderr_text();
  for (const auto& datagram : notify.datagrams()) {
    std::istringstream lines(datagram);
    for (std::string line; std::getline(lines, line);) {
      EXPECT_NE(line.rfind("WATCHDOG=", 0), 0U) << "injected line in datagram:\n" << datagram;
      EXPECT_NE(line.rfind("X=", 0), 0U) << "injected line in datagram:\n" << datagram;
    }
  }
  EXPECT_TRUE(notify.any_status([](const std::string& s) {
    return s.find("x\\nWATCHDOG=trigger") != std::string::npos;
  })) << "the escaped text is not in STATUS:\n"
      << notify.all_statuses();
  EXPECT_TRUE(dpsd->running());
  expect_untouched(*device);
}

// Runs `dpsd --once --force --timeout 10`, sampling VmRSS until it exits (bounded).
struct RssRun {
  RunResult result;
  long peak_kib = 0;
};
RssRun run_sampling_rss(const Device& device) {
  // 10 s: room for the first attempt to meet the hostile reply on a loaded machine (the
  // sanitizer build, a 32 MiB reply to produce); the run then retries until the deadline.
  Process dpsd({DPSD_BINARY, "--config", device.config_path().string(), "--once", "--force",
                "--timeout", "10"});
  RssRun out;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (dpsd.running() && std::chrono::steady_clock::now() < deadline) {
    out.peak_kib = std::max(out.peak_kib, rss_kib(dpsd.pid()));
    std::this_thread::sleep_for(10ms);
  }
  const auto code = dpsd.wait_for_exit(1s);
  if (!code) dpsd.stop();
  out.result.exit_code = code.value_or(-1);
  out.result.err = dpsd.stderr_text();
  return out;
}

// Peak VmRSS of a friendly `--once` (immediate assignment) by the same binary: the yardstick
// for growth, which means the same in the regular and in the sanitizer build.
long friendly_peak_kib(DpsEmulator& emulator) {
  auto device =
      enroll_device(emulator, regid_for_this_test("ho-", "-base"), {{"name", "immediate"}});
  const RssRun run = run_sampling_rss(*device);
  EXPECT_EQ(run.result.exit_code, 0) << run.result.err;
  std::printf("[ figures  ] friendly --once: dpsd peak VmRSS %ld KiB\n", run.peak_kib);
  return run.peak_kib;
}

// The bound is 64 MiB for dpsd as shipped. AddressSanitizer's shadow memory and
// quarantine alone take dpsd near that (measured: 60-70 MiB in the 50-sanitizers build), so
// there the absolute bound says nothing and the growth over a friendly run is what is checked;
// the growth bound applies to every build.
void expect_memory_bounded(long peak_kib, long friendly_kib) {
  EXPECT_LT(peak_kib - friendly_kib, 32 * 1024)
      << "peak VmRSS " << peak_kib << " KiB, a friendly run " << friendly_kib << " KiB";
#ifndef __SANITIZE_ADDRESS__
  EXPECT_LT(peak_kib, 64 * 1024) << "peak VmRSS " << peak_kib << " KiB";
#endif
}

// Issue 10 §3: the inbound size is capped before parsing.
TEST_F(Hostile, OversizedReplyKeepsMemoryBounded) {
  const long friendly = friendly_peak_kib(emulator());
  auto device = provisioned({{"name", "oversize"}, {"bytes", 32 * 1024 * 1024}});
  const RssRun run = run_sampling_rss(*device);
  std::printf("[ figures  ] 32 MiB reply: dpsd peak VmRSS %ld KiB\n", run.peak_kib);
  EXPECT_EQ(run.result.exit_code, 3) << run.result.err.substr(0, 8000);
  expect_memory_bounded(run.peak_kib, friendly);
  EXPECT_NE(run.result.err.find("protocol error"), std::string::npos)
      << run.result.err.substr(0, 8000);
  expect_untouched(*device);
}

// Issue 10 §3: DPS never sends QoS 2; a flood of them ends the attempt as a protocol error.
TEST_F(Hostile, Qos2FloodKeepsMemoryBounded) {
  const long friendly = friendly_peak_kib(emulator());
  auto device = provisioned({{"name", "qos2_flood"}, {"count", 3000}, {"bytes", 100 * 1024}});
  const RssRun run = run_sampling_rss(*device);
  std::printf("[ figures  ] 3,000 x 100 KB QoS 2: dpsd peak VmRSS %ld KiB\n", run.peak_kib);
  EXPECT_EQ(run.result.exit_code, 3) << run.result.err.substr(0, 8000);
  expect_memory_bounded(run.peak_kib, friendly);
  EXPECT_NE(run.result.err.find("protocol error"), std::string::npos)
      << run.result.err.substr(0, 8000);
  expect_untouched(*device);
}

// Issue 10 §14: replies with a wrong $rid are logged by length, not content: twenty 60 KB ones
// must cost less than 100 KB of log.
TEST_F(Hostile, UnsolicitedRepliesCostLittleLog) {
  auto device = provisioned({{"name", "unsolicited_flood"}, {"count", 20}, {"rid_bytes", 60000}});
  const RunResult r = device->run({"--once", "--force", "--timeout", "5", "--verbose"}, 40s);
  std::printf("[ figures  ] 20 unsolicited 60 KB replies: %zu bytes of stderr\n", r.err.size());
  EXPECT_TRUE(r.exit_code == 0 || r.exit_code == 3) << describe(r).substr(0, 4000);
  EXPECT_LT(r.err.size(), 100U * 1024U) << r.err.substr(0, 4000);
  EXPECT_EQ(r.err.find(std::string(1000, 'r')), std::string::npos) << "a $rid was logged whole";
  if (r.exit_code != 0) expect_untouched(*device);
}

// Issue 10 §6: --timeout is a deadline for the whole run, even against an endless 202.
TEST_F(Hostile, EndlessAssigningEndsAtTheDeadline) {
  auto device = provisioned({{"name", "endless_202"}, {"retry_after", 1}});
  const RunResult r = device->run({"--once", "--force", "--timeout", "5"}, 15s);
  EXPECT_EQ(r.exit_code, 3) << "did not give up within 15 s\n" << describe(r).substr(0, 4000);
  expect_untouched(*device);
}

}  // namespace
}  // namespace dpsd::test
