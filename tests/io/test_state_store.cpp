#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>

#include "io/state_store.hpp"

namespace dpsd::io {
namespace {

namespace fs = std::filesystem;

// Small private helpers, so this test depends on nothing but the module it tests.
class ScratchDir {
 public:
  ScratchDir() {
    std::string templ = (fs::temp_directory_path() / "dpsd-state-store-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~ScratchDir() {
    // Undo chmods a test made, or remove_all cannot descend (for non-root runs).
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(path_, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_directory(ec)) ::chmod(it->path().c_str(), 0755);
    }
    fs::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spill(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out.flush()) throw std::runtime_error("cannot write " + path.string());
}

unsigned mode_of(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0xffffffffU;
  return st.st_mode & 07777;
}

std::set<std::string> entries(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) {
    names.insert(entry.path().filename().string());
  }
  return names;
}

// Sets the umask for one scope; restrictive masks prove the modes come from the code.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : previous_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(previous_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t previous_;
};

core::Assignment sample(std::string hub = "contoso-hub.azure-devices.net") {
  core::Assignment a;
  a.assigned_hub = std::move(hub);
  a.device_id = "gateway-01";
  a.registration_id = "gateway-01";
  a.id_scope = "0ne00ABCDEF";
  a.substatus = "initialAssignment";
  a.payload_json = R"({"site":"plant-7"})";
  a.provisioned_at_unix = 1795683600;
  a.attestation = "symmetric_key";
  a.enrollment = "individual";
  a.key_uri = "file:/etc/dpsd/device.key";
  a.endpoint = "global.azure-devices-provisioning.net:8883";
  a.fingerprint = "sha256:" + std::string(64, '0');
  return a;
}

// --- save and load ---------------------------------------------------------------------------

TEST(StateStore, SaveThenLoadRoundTrips) {
  ScratchDir dir;
  StateStore store(dir / "state", dir / "run");
  const auto saved = store.save(sample());
  ASSERT_TRUE(saved.ok()) << saved.error();

  std::string problem = "stale";
  const auto loaded = store.load(&problem);
  ASSERT_TRUE(loaded.has_value()) << problem;
  EXPECT_EQ(problem, "");
  EXPECT_EQ(*loaded, sample());
  EXPECT_EQ(slurp(store.state_path()), core::serialize_state(sample()));
  EXPECT_EQ(slurp(store.env_path()), core::render_env_file(sample()));
}

TEST(StateStore, PathsAreTheDocumentedOnes) {
  StateStore store("/var/lib/dpsd", "/run/dpsd");
  EXPECT_EQ(store.state_path(), fs::path("/var/lib/dpsd/state.json"));
  EXPECT_EQ(store.env_path(), fs::path("/run/dpsd/iothub.env"));
}

TEST(StateStore, BothFilesAre0644WhateverTheUmask) {
  ScratchDir dir;
  StateStore store(dir / "state", dir / "run");
  ScopedUmask mask(0077);
  ASSERT_TRUE(store.save(sample()).ok());
  EXPECT_EQ(mode_of(store.state_path()), 0644U);
  EXPECT_EQ(mode_of(store.env_path()), 0644U);
}

TEST(StateStore, CreatesMissingDirectoriesAs0755) {
  ScratchDir dir;
  StateStore store(dir / "var/lib/dpsd", dir / "run/dpsd");
  ScopedUmask mask(0077);
  const auto saved = store.save(sample());
  ASSERT_TRUE(saved.ok()) << saved.error();
  for (const char* d : {"var", "var/lib", "var/lib/dpsd", "run", "run/dpsd"}) {
    EXPECT_EQ(mode_of(dir / d), 0755U) << d;
  }
  EXPECT_TRUE(fs::is_regular_file(store.state_path()));
  EXPECT_TRUE(fs::is_regular_file(store.env_path()));
}

TEST(StateStore, LeavesExistingDirectoryModesAlone) {
  ScratchDir dir;
  fs::create_directory(dir / "state");
  ::chmod((dir / "state").c_str(), 0700);
  StateStore store(dir / "state", dir / "run");
  ASSERT_TRUE(store.save(sample()).ok());
  EXPECT_EQ(mode_of(dir / "state"), 0700U);
}

TEST(StateStore, LeavesNoTempFiles) {
  ScratchDir dir;
  StateStore store(dir / "state", dir / "run");
  ASSERT_TRUE(store.save(sample()).ok());
  ASSERT_TRUE(store.save(sample("other.azure-devices.net")).ok());
  EXPECT_EQ(entries(dir / "state"), std::set<std::string>{"state.json"});
  EXPECT_EQ(entries(dir / "run"), std::set<std::string>{"iothub.env"});
}

TEST(StateStore, SaveReplacesThePreviousState) {
  ScratchDir dir;
  StateStore store(dir / "state", dir / "run");
  ASSERT_TRUE(store.save(sample()).ok());
  ASSERT_TRUE(store.save(sample("second.azure-devices.net")).ok());
  std::string problem;
  const auto loaded = store.load(&problem);
  ASSERT_TRUE(loaded.has_value()) << problem;
  EXPECT_EQ(loaded->assigned_hub, "second.azure-devices.net");
  EXPECT_NE(slurp(store.env_path()).find("IOTHUB_HOSTNAME=second.azure-devices.net\n"),
            std::string::npos);
}

TEST(StateStore, SaveRemovesTempFilesLeftByACrash) {
  ScratchDir dir;
  fs::create_directories(dir / "state");
  fs::create_directories(dir / "run");
  spill(dir / "state/.state.json.Ab12Cd", "{\"half");
  spill(dir / "run/.iothub.env.Zz99yY", "IOTHUB_HOST");
  spill(dir / "state/.state.json.keep-me-not-ours", "x");  // not the temp pattern
  StateStore store(dir / "state", dir / "run");
  ASSERT_TRUE(store.save(sample()).ok());
  EXPECT_EQ(entries(dir / "state"),
            (std::set<std::string>{"state.json", ".state.json.keep-me-not-ours"}));
  EXPECT_EQ(entries(dir / "run"), std::set<std::string>{"iothub.env"});
}

TEST(StateStore, WriteEnvRecreatesTheRuntimeDirectory) {
  ScratchDir dir;
  StateStore store(dir / "state", dir / "run");
  ASSERT_TRUE(store.save(sample()).ok());
  fs::remove_all(dir / "run");  // as after a reboot: /run is a tmpfs
  std::string problem;
  const auto loaded = store.load(&problem);
  ASSERT_TRUE(loaded.has_value()) << problem;
  const auto written = store.write_env(*loaded);
  ASSERT_TRUE(written.ok()) << written.error();
  EXPECT_EQ(slurp(store.env_path()), core::render_env_file(sample()));
  EXPECT_EQ(mode_of(store.env_path()), 0644U);
}

// --- load: absent, unreadable, corrupt --------------------------------------------------------

TEST(StateStore, LoadWithoutAFileIsNotAProblem) {
  ScratchDir dir;
  std::string problem = "stale";
  EXPECT_FALSE(StateStore(dir / "state", dir / "run").load(&problem).has_value());
  EXPECT_EQ(problem, "");
  // Nor when the state directory itself does not exist yet.
  problem = "stale";
  EXPECT_FALSE(StateStore(dir / "no/such/dir", dir / "run").load(&problem).has_value());
  EXPECT_EQ(problem, "");
}

TEST(StateStore, LoadAcceptsANullProblemPointer) {
  ScratchDir dir;
  StateStore store(dir.path(), dir / "run");
  EXPECT_FALSE(store.load(nullptr).has_value());
  spill(store.state_path(), "{");
  EXPECT_FALSE(store.load(nullptr).has_value());
}

TEST(StateStore, LoadReportsACorruptFileByPathAndReason) {
  ScratchDir dir;
  StateStore store(dir.path(), dir / "run");
  const std::string good = core::serialize_state(sample());
  const struct {
    std::string text;
    std::string reason;
  } cases[] = {
      {good.substr(0, good.size() / 2), "not valid JSON (truncated or corrupt)"},
      {"", "the file is empty"},
      {"[]", "expected a JSON object"},
      {R"({"schema":7})", "schema 7 is not supported (expected 1)"},
  };
  for (const auto& c : cases) {
    spill(store.state_path(), c.text);
    std::string problem;
    EXPECT_FALSE(store.load(&problem).has_value()) << c.text;
    EXPECT_EQ(problem, store.state_path().string() + ": " + c.reason);
  }
}

TEST(StateStore, LoadReportsAFieldError) {
  ScratchDir dir;
  StateStore store(dir.path(), dir / "run");
  core::Assignment a = sample();
  a.assigned_hub = "";
  spill(store.state_path(), core::serialize_state(a));
  std::string problem;
  EXPECT_FALSE(store.load(&problem).has_value());
  EXPECT_EQ(problem, store.state_path().string() + ": \"assignedHub\" must be a non-empty string");
}

TEST(StateStore, LoadReportsADirectoryInPlaceOfTheFile) {
  ScratchDir dir;
  StateStore store(dir.path(), dir / "run");
  fs::create_directory(store.state_path());
  std::string problem;
  EXPECT_FALSE(store.load(&problem).has_value());
  EXPECT_EQ(problem, store.state_path().string() + ": is a directory, not a regular file");
}

// A FIFO at state.json used to block open() for ever, before READY and with signals blocked.
// Run in a child so that, on the old code, the test fails on its deadline instead of hanging.
TEST(StateStore, LoadRefusesAFifoWithoutBlocking) {
  ScratchDir dir;
  StateStore store(dir.path(), dir / "run");
  ASSERT_EQ(::mkfifo(store.state_path().c_str(), 0644), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::alarm(5);  // the old code blocks in open(); SIGALRM ends the child then
    std::string problem;
    const bool refused = !store.load(&problem).has_value() &&
                         problem == store.state_path().string() + ": is a FIFO, not a regular file";
    ::_exit(refused ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "load() blocked on the FIFO (killed by signal "
                                 << (WIFSIGNALED(status) ? WTERMSIG(status) : 0) << ")";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "load() did not report the FIFO as such";
}

// dpsd only ever renames a regular file into place; a symlink there was planted by someone else.
TEST(StateStore, LoadRefusesASymlink) {
  ScratchDir dir;
  StateStore store(dir.path(), dir / "run");
  spill(dir / "elsewhere.json", core::serialize_state(sample()));
  fs::create_symlink(dir / "elsewhere.json", store.state_path());
  std::string problem;
  EXPECT_FALSE(store.load(&problem).has_value());
  EXPECT_EQ(problem, store.state_path().string() +
                         ": is a symbolic link; refusing to follow it (name the file itself)");
}

TEST(StateStore, LoadReportsAStateDirThatIsAFile) {
  ScratchDir dir;
  spill(dir / "state", "not a directory");
  StateStore store(dir / "state", dir / "run");
  std::string problem;
  EXPECT_FALSE(store.load(&problem).has_value());
  EXPECT_EQ(problem, store.state_path().string() + ": cannot open: " + std::strerror(ENOTDIR));
}

TEST(StateStore, LoadRefusesAHugeFile) {
  ScratchDir dir;
  StateStore store(dir.path(), dir / "run");
  spill(store.state_path(), std::string(2 << 20, ' '));
  std::string problem;
  EXPECT_FALSE(store.load(&problem).has_value());
  EXPECT_EQ(problem, store.state_path().string() + ": is larger than 262144 bytes");
}

// Root ignores file modes; the permission cases run with the effective uid of nobody so the
// kernel really refuses, and switch back afterwards (gtest runs tests on one thread).
class AsNobody {
 public:
  explicit AsNobody(const fs::path& dir) {
    if (::geteuid() != 0) return;
    ::chmod(dir.c_str(), 0755);  // nobody must be able to reach the files inside
    dropped_ = ::setegid(65534) == 0 && ::seteuid(65534) == 0;
  }
  ~AsNobody() {
    if (dropped_) {
      [[maybe_unused]] const int u = ::seteuid(0);
      [[maybe_unused]] const int g = ::setegid(0);
    }
  }
  AsNobody(const AsNobody&) = delete;
  AsNobody& operator=(const AsNobody&) = delete;

 private:
  bool dropped_ = false;
};

TEST(StateStore, LoadReportsAnUnreadableFile) {
  ScratchDir dir;
  StateStore store(dir.path(), dir / "run");
  spill(store.state_path(), core::serialize_state(sample()));
  ::chmod(store.state_path().c_str(), 0000);
  std::string problem;
  {
    AsNobody nobody(dir.path());
    EXPECT_FALSE(store.load(&problem).has_value());
  }
  EXPECT_EQ(problem, store.state_path().string() + ": cannot open: " + std::strerror(EACCES));
}

// --- write failures -----------------------------------------------------------------------------

TEST(WriteFileAtomically, SetsTheRequestedMode) {
  ScratchDir dir;
  ScopedUmask mask(0077);
  for (const unsigned mode : {0600U, 0640U, 0644U, 0444U}) {
    const auto written = write_file_atomically(dir / "f", "x", mode);
    ASSERT_TRUE(written.ok()) << written.error();
    EXPECT_EQ(mode_of(dir / "f"), mode);
  }
  EXPECT_EQ(entries(dir.path()), std::set<std::string>{"f"});
}

TEST(WriteFileAtomically, WritesLargeContentCompletely) {
  ScratchDir dir;
  std::string content;
  for (int i = 0; content.size() < (3 << 20); ++i) content += std::to_string(i) + '\n';
  ASSERT_TRUE(write_file_atomically(dir / "big", content, 0644).ok());
  EXPECT_EQ(slurp(dir / "big"), content);
}

TEST(WriteFileAtomically, FailsWhenTheParentIsAFile) {
  ScratchDir dir;
  spill(dir / "file", "x");
  const fs::path target = dir / "file" / "state.json";
  const auto written = write_file_atomically(target, "{}", 0644);
  ASSERT_FALSE(written.ok());
  EXPECT_NE(written.error().find(target.string()), std::string::npos) << written.error();
  EXPECT_NE(written.error().find(std::strerror(ENOTDIR)), std::string::npos) << written.error();
}

TEST(WriteFileAtomically, RemovesTheTempFileWhenRenameFails) {
  ScratchDir dir;
  // A non-empty directory where the file should go: everything succeeds up to the rename.
  fs::create_directories(dir / "state.json" / "occupied");
  const auto written = write_file_atomically(dir / "state.json", "{}", 0644);
  ASSERT_FALSE(written.ok());
  EXPECT_EQ(written.error().rfind("rename to " + (dir / "state.json").string() + ": ", 0), 0U)
      << written.error();
  EXPECT_EQ(entries(dir.path()), std::set<std::string>{"state.json"});
  EXPECT_TRUE(fs::is_directory(dir / "state.json"));
}

TEST(StateStore, SaveFailsWhenTheStateDirIsAFile) {
  ScratchDir dir;
  spill(dir / "state", "x");
  StateStore store(dir / "state", dir / "run");
  const auto saved = store.save(sample());
  ASSERT_FALSE(saved.ok());
  EXPECT_EQ(saved.error(),
            "create directory " + (dir / "state").string() + ": " + std::strerror(ENOTDIR));
  EXPECT_FALSE(fs::exists(dir / "run" / "iothub.env"));  // no env without a state
}

TEST(StateStore, SaveFailsInAReadOnlyStateDir) {
  ScratchDir dir;
  StateStore store(dir / "state", dir / "run");
  ASSERT_TRUE(store.save(sample()).ok());
  const std::string before = slurp(store.state_path());
  ::chmod((dir / "state").c_str(), 0555);
  ::chmod((dir / "run").c_str(), 0777);
  const auto saved = [&] {
    AsNobody nobody(dir.path());
    return store.save(sample("other.azure-devices.net"));
  }();
  ASSERT_FALSE(saved.ok());
  EXPECT_NE(saved.error().find(std::strerror(EACCES)), std::string::npos) << saved.error();
  EXPECT_EQ(slurp(store.state_path()), before);
  EXPECT_EQ(entries(dir / "state"), std::set<std::string>{"state.json"});
}

// --- a full disk (root only: mounts a tiny tmpfs in a private mount namespace)
// --------------------

class FullDisk : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
    // A private mount namespace for this process, so the mount disappears with it even if the
    // test crashes, and nothing propagates to the host.
    if (::unshare(CLONE_NEWNS) != 0 ||
        ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      GTEST_SKIP() << "no private mount namespace: " << std::strerror(errno);
    }
    mount_point_ = dir_ / "fs";
    fs::create_directory(mount_point_);
    if (::mount("tmpfs", mount_point_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k") != 0) {
      GTEST_SKIP() << "mount tmpfs: " << std::strerror(errno);
    }
    mounted_ = true;
  }
  void TearDown() override {
    if (mounted_) ::umount2(mount_point_.c_str(), MNT_DETACH);
  }

  // Fills the filesystem to the last byte; page-sized writes first, then single bytes for the
  // remainder of the last page.
  void fill() {
    const int fd = ::open((mount_point_ / "filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
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

  ScratchDir dir_;
  fs::path mount_point_;
  bool mounted_ = false;
};

TEST_F(FullDisk, SaveFailsWithENOSPCAndKeepsThePreviousState) {
  StateStore store(mount_point_ / "state", dir_ / "run");
  ASSERT_TRUE(store.save(sample()).ok());
  const std::string before = slurp(store.state_path());
  fill();

  const auto saved = store.save(sample("other.azure-devices.net"));
  ASSERT_FALSE(saved.ok());
  EXPECT_EQ(saved.error(), "write " + store.state_path().string() + ": " + std::strerror(ENOSPC));
  EXPECT_EQ(slurp(store.state_path()), before);
  EXPECT_EQ(entries(mount_point_ / "state"), std::set<std::string>{"state.json"});
  // The env file still describes the state on disk, not the one that failed to save.
  EXPECT_EQ(slurp(store.env_path()), core::render_env_file(sample()));

  std::string problem;
  const auto loaded = store.load(&problem);
  ASSERT_TRUE(loaded.has_value()) << problem;
  EXPECT_EQ(*loaded, sample());
}

TEST_F(FullDisk, EnvWriteFailsWithENOSPCAndKeepsThePreviousEnv) {
  StateStore store(dir_ / "state", mount_point_ / "run");
  ASSERT_TRUE(store.save(sample()).ok());
  const std::string before = slurp(store.env_path());
  fill();

  const auto saved = store.save(sample("other.azure-devices.net"));
  ASSERT_FALSE(saved.ok());
  EXPECT_EQ(saved.error(), "write " + store.env_path().string() + ": " + std::strerror(ENOSPC));
  EXPECT_EQ(slurp(store.env_path()), before);
  EXPECT_EQ(entries(mount_point_ / "run"), std::set<std::string>{"iothub.env"});
}

}  // namespace
}  // namespace dpsd::io
