// Issue 14 §3, one writer of the state: a running dpsd holds <state_dir>/dpsd.lock, and a second
// instance on the same state directory (the operator's `dpsd --once --force`) is refused with
// exit 75 and a message naming the running pid, before it touches state.json or iothub.env.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "daemon_run.hpp"
#include "dpsd_fixture.hpp"
#include "support/wait.hpp"

namespace dpsd::test {
namespace {

using namespace std::chrono_literals;

constexpr int kExitAlreadyRunning = 75;  // io/instance_lock.hpp, dpsd(8)

class InstanceLockTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { emulator_ = std::make_unique<DpsEmulator>(EmulatorOptions{}); }
  static void TearDownTestSuite() { emulator_.reset(); }

  static std::unique_ptr<DpsEmulator> emulator_;
};

std::unique_ptr<DpsEmulator> InstanceLockTest::emulator_;

std::int64_t mtime_ns(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return -1;
  return st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec;
}

TEST_F(InstanceLockTest, SecondInstanceIsRefusedAndLeavesTheStateAlone) {
  auto device = enroll_device(*emulator_, regid_for_this_test("lk-"), {{"name", "immediate"}});
  NotifyCapture notify(device->dir() / "notify.sock");
  auto dpsd = start_daemon(*device, notify);
  ASSERT_TRUE(wait_until([&] { return notify.last_status().rfind("Provisioned: ", 0) == 0; }, 30s))
      << "the daemon did not provision: " << notify.last_status() << "\n"
      << dpsd->stderr_text();
  const std::string state_before = device->state_text();
  const std::string env_before = device->env_text();
  const auto state_mtime = mtime_ns(device->state_path());
  const auto registers = emulator_->count_events("register", device->regid());

  const RunResult second = device->once({"--force", "--timeout", "10"});
  EXPECT_EQ(second.exit_code, kExitAlreadyRunning) << describe(second);
  EXPECT_NE(second.err.find("dpsd is already running (pid " + std::to_string(dpsd->pid()) +
                            "); use `dpsctl reprovision`"),
            std::string::npos)
      << describe(second);
  EXPECT_EQ(device->state_text(), state_before);
  EXPECT_EQ(mtime_ns(device->state_path()), state_mtime) << "state.json was rewritten";
  EXPECT_EQ(device->env_text(), env_before);
  EXPECT_EQ(emulator_->count_events("register", device->regid()), registers)
      << "the refused instance registered with DPS";
  EXPECT_TRUE(dpsd->running()) << dpsd->stderr_text();

  // The kernel drops the lock with its holder: the next run needs no clean-up.
  EXPECT_EQ(dpsd->stop(), 0) << dpsd->stderr_text();
  const RunResult after = device->once({"--force", "--timeout", "30"});
  EXPECT_EQ(after.exit_code, 0) << describe(after);
}

TEST_F(InstanceLockTest, LockFileIsNotFollowedThroughASymlink) {
  auto device = enroll_device(*emulator_, regid_for_this_test("lk-"), {{"name", "immediate"}});
  std::filesystem::create_directories(device->dir() / "state");
  const auto target = device->dir() / "elsewhere";
  write_file(target, "keep me\n", 0644);
  std::filesystem::create_symlink(target, device->dir() / "state" / "dpsd.lock");
  const RunResult r = device->once({"--timeout", "30"});
  // Not fatal (no instance can be running with that file), but named, and the target untouched.
  EXPECT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_NE(r.err.find("dpsd.lock"), std::string::npos) << describe(r);
  EXPECT_EQ(read_file(target), "keep me\n");
}

}  // namespace
}  // namespace dpsd::test
