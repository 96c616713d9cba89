// Crash consistency of the state files, with the real dpsd against the DPS emulator:
//
// KillLoop: `dpsd --once --force` re-provisions in a loop under the emulator's `reassign` scenario
// (each register is assigned the next hub) and is SIGKILLed after a random delay, spread so kills
// land before the state write (connecting, TLS, waiting for DPS), around it, and after the process
// has exited. After every round:
//   state.json  is either byte-identical to the state before the round, or a new assignment in
//               canonical form (parse_state accepts it, serialize_state(parsed) reproduces it byte
//               for byte, same device and fingerprint, hub one of the emulator's) — never missing,
//               empty, truncated or mixed.
//   iothub.env  is one of exactly three texts, because StateStore writes state.json first and
//               iothub.env second (each atomically), and a cached state re-writes iothub.env at
//               start-up before provisioning:
//                 env_before            killed before the start-up re-write finished;
//                 render(state_before)  killed after it, before the new env was in place
//                                       (including between the state rename and the env rename);
//                 render(state_after)   everything that was started completed.
//               So iothub.env lags state.json by at most one assignment, and the lag is repaired by
//               the next run that gets past start-up.
// Bounded: at most 400 rounds or ~55 s, whichever comes first.
//
// FullDisk / ReadOnlyStateDir: the state dir on a full 64 KiB tmpfs, or bind-mounted read-only, in
// a private mount namespace (root only, as in CI; skipped otherwise): `dpsd --once --force`
// provisions, cannot write, exits 4 naming state.json and the cause, and the old state is
// byte-identical.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <thread>

#include "core/state_record.hpp"
#include "dpsd_fixture.hpp"

namespace dpsd::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

std::string read_or_empty(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return {};
  return read_file(path);
}

std::string env_for(const std::string& state_text) {
  auto parsed = core::parse_state(state_text);
  return parsed ? core::render_env_file(*parsed) : std::string("<state does not parse>");
}

class CrashConsistency : public ::testing::Test {
 protected:
  void SetUp() override {
    EmulatorOptions options;
    emulator_ = std::make_unique<DpsEmulator>(options);
  }
  std::unique_ptr<DpsEmulator> emulator_;
};

TEST_F(CrashConsistency, KillLoopNeverLeavesBrokenOrMixedState) {
  Device device(*emulator_, "crash-loop");
  // polls 0: the assignment comes on the register itself, so one run is short and the loop
  // covers hundreds of rounds; each register moves the device to the next hub.
  emulator_->set_device(device.regid(), device.key(), {{"name", "reassign"}, {"polls", 0}});

  // Calibrate: a few complete runs; their wall time spreads the kill delays.
  std::chrono::milliseconds longest{0};
  for (int i = 0; i < 4; ++i) {
    const RunResult r = device.once({"--force"});
    ASSERT_EQ(r.exit_code, 0) << describe(r);
    longest = std::max(longest, r.took);
  }
  const auto first = core::parse_state(device.state_text());
  ASSERT_TRUE(first) << first.error();
  const std::string fingerprint = first->fingerprint;
  const auto& hubs = emulator_->hubs();

  std::mt19937 rng(std::random_device{}());
  const int span_ms = static_cast<int>(longest.count()) * 13 / 10 + 5;
  // Half the kills uniform over the whole run and a bit beyond; half in its last 30 %, where
  // the reply arrives and the files are written.
  std::uniform_int_distribution<int> anywhere(0, span_ms);
  std::uniform_int_distribution<int> late(static_cast<int>(longest.count()) * 7 / 10, span_ms);

  std::map<std::string, int> tally;
  const auto deadline = std::chrono::steady_clock::now() + 55s;
  int rounds = 0;
  for (; rounds < 400 && std::chrono::steady_clock::now() < deadline; ++rounds) {
    const std::string state_before = device.state_text();
    const std::string env_before = read_or_empty(device.env_path());
    const int delay = (rounds % 2 == 0) ? anywhere(rng) : late(rng);

    Process dpsd({DPSD_BINARY, "--config", device.config_path().string(), "--once", "--force"});
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    dpsd.signal(SIGKILL);  // harmless if it already exited: it is not reaped yet
    const auto code = dpsd.wait_for_exit(10s);
    ASSERT_TRUE(code.has_value()) << "dpsd did not die after SIGKILL";
    ASSERT_TRUE(*code == 0 || *code == 128 + SIGKILL)
        << "round " << rounds << ": exit " << *code << "\n"
        << dpsd.stderr_text();

    // state.json: present, and the old bytes or a complete canonical new assignment.
    ASSERT_TRUE(device.has_state()) << "round " << rounds << ": state.json vanished";
    const std::string state_after = device.state_text();
    ASSERT_FALSE(state_after.empty()) << "round " << rounds << ": state.json is empty";
    auto parsed = core::parse_state(state_after);
    ASSERT_TRUE(parsed) << "round " << rounds << " (kill after " << delay
                        << " ms): state.json does not parse: " << parsed.error() << "\n"
                        << state_after;
    const bool changed = state_after != state_before;
    if (changed) {
      EXPECT_EQ(core::serialize_state(*parsed), state_after)
          << "round " << rounds << ": state.json is not one whole serialised record";
      EXPECT_EQ(parsed->device_id, device.regid());
      EXPECT_EQ(parsed->registration_id, device.regid());
      EXPECT_EQ(parsed->id_scope, emulator_->scope());
      EXPECT_EQ(parsed->fingerprint, fingerprint);
      EXPECT_NE(std::find(hubs.begin(), hubs.end(), parsed->assigned_hub), hubs.end())
          << parsed->assigned_hub;
      EXPECT_EQ(parsed->substatus, "reprovisionedToInitialAssignment");
      EXPECT_GE(parsed->provisioned_at_unix, core::parse_state(state_before)->provisioned_at_unix);
    }

    // iothub.env: exactly one of the three allowed texts.
    const std::string env_after = read_or_empty(device.env_path());
    const std::string env_of_before = env_for(state_before);
    const std::string env_of_after = env_for(state_after);
    const bool env_ok =
        env_after == env_of_after || env_after == env_of_before || env_after == env_before;
    ASSERT_TRUE(env_ok) << "round " << rounds << " (kill after " << delay
                        << " ms): iothub.env is none of the allowed texts\n--- env\n"
                        << env_after << "--- state\n"
                        << state_after;

    std::string kind = *code == 0 ? "exited" : "killed";
    kind += changed ? ", new state" : ", state kept";
    kind += env_after == env_of_after ? ", env in sync" : ", env one behind";
    ++tally[kind];
  }

  std::cout << "[ crash    ] " << rounds << " rounds, kill delay 0-" << span_ms
            << " ms (a complete run took up to " << longest.count() << " ms):\n";
  for (const auto& [kind, n] : tally) std::cout << "[ crash    ]   " << n << " x " << kind << "\n";
  EXPECT_GE(rounds, 100) << "too few rounds in the time bound";
  EXPECT_GT(tally["killed, state kept, env in sync"] + tally["killed, state kept, env one behind"],
            0)
      << "no kill landed before the state write";

  // A clean run afterwards repairs any lag and leaves no temp file behind.
  const RunResult r = device.once({"--force"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(device.env_text(), env_for(device.state_text()));
  for (const auto& dir : {device.state_path().parent_path(), device.env_path().parent_path()}) {
    for (const auto& entry : fs::directory_iterator(dir)) {
      const std::string name = entry.path().filename().string();
      EXPECT_FALSE(name.starts_with(".state.json.") || name.starts_with(".iothub.env."))
          << "stale temp file " << entry.path();
    }
  }
}

// Mounts in a private mount namespace of this test process (each test runs in its own process
// under ctest), undone by the destructor before the device's temp dir is removed.
class PrivateMount {
 public:
  // Returns an empty string on success, else why it cannot (the test then skips).
  static std::string enter_namespace() {
    if (::geteuid() != 0) return "needs root for a private mount namespace";
    if (::unshare(CLONE_NEWNS) != 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      return std::string("no private mount namespace: ") + std::strerror(errno);
    }
    return {};
  }
  explicit PrivateMount(fs::path target) : target_(std::move(target)) {}
  ~PrivateMount() {
    if (mounted_) ::umount2(target_.c_str(), MNT_DETACH);
  }
  std::string tmpfs(const char* options) {
    if (::mount("tmpfs", target_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options) != 0)
      return std::string("mount tmpfs: ") + std::strerror(errno);
    mounted_ = true;
    return {};
  }
  std::string bind_read_only() {
    if (::mount(target_.c_str(), target_.c_str(), nullptr, MS_BIND, nullptr) != 0)
      return std::string("bind mount: ") + std::strerror(errno);
    mounted_ = true;
    if (::mount(nullptr, target_.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) != 0)
      return std::string("remount read-only: ") + std::strerror(errno);
    return {};
  }

 private:
  fs::path target_;
  bool mounted_ = false;
};

TEST_F(CrashConsistency, FullDiskExits4AndKeepsOldState) {
  if (auto why = PrivateMount::enter_namespace(); !why.empty()) GTEST_SKIP() << why;
  Device device(*emulator_, "crash-full-disk");
  emulator_->set_device(device.regid(), device.key(), {{"name", "reassign"}, {"polls", 0}});
  RunResult r = device.once({"--force"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const std::string old_state = device.state_text();

  // The state dir becomes a 64 KiB tmpfs holding the same state.json, then filled to the brim.
  const fs::path state_dir = device.state_path().parent_path();
  PrivateMount mount(state_dir);
  if (auto why = mount.tmpfs("size=64k"); !why.empty()) GTEST_SKIP() << why;
  write_file(device.state_path(), old_state, 0644);
  {
    const int fd = ::open((state_dir / "filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    const std::string page(4096, 'f');
    while (::write(fd, page.data(), page.size()) > 0) {
    }
    while (::write(fd, "f", 1) > 0) {
    }
    const int err = errno;
    ::close(fd);
    ASSERT_EQ(err, ENOSPC);
  }

  r = device.once({"--force"});
  EXPECT_EQ(r.exit_code, 4) << describe(r);
  EXPECT_NE(r.err.find(device.state_path().string()), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find(std::strerror(ENOSPC)), std::string::npos) << describe(r);
  EXPECT_EQ(device.state_text(), old_state) << "a failed write changed the old state";
  for (const auto& entry : fs::directory_iterator(state_dir)) {
    EXPECT_FALSE(entry.path().filename().string().starts_with(".state.json."))
        << "temp file left behind: " << entry.path();
  }
}

TEST_F(CrashConsistency, ReadOnlyStateDirExits4AndKeepsOldState) {
  if (auto why = PrivateMount::enter_namespace(); !why.empty()) GTEST_SKIP() << why;
  Device device(*emulator_, "crash-read-only");
  emulator_->set_device(device.regid(), device.key(), {{"name", "reassign"}, {"polls", 0}});
  RunResult r = device.once({"--force"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  const std::string old_state = device.state_text();
  const std::string old_env = device.env_text();

  PrivateMount mount(device.state_path().parent_path());
  if (auto why = mount.bind_read_only(); !why.empty()) GTEST_SKIP() << why;

  r = device.once({"--force"});
  EXPECT_EQ(r.exit_code, 4) << describe(r);
  EXPECT_NE(r.err.find(device.state_path().string()), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find(std::strerror(EROFS)), std::string::npos) << describe(r);
  EXPECT_EQ(device.state_text(), old_state) << "a failed write changed the old state";
  // state.json is written first, so iothub.env is not touched either (it still matches).
  EXPECT_EQ(device.env_text(), old_env);
}

}  // namespace
}  // namespace dpsd::test
