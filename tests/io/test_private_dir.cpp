// make_private_dir and open_private_dir against real directories, files and planted symlinks.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "io/private_dir.hpp"
#include "support/files.hpp"
#include "support/temp_dir.hpp"

namespace dpsd::io {
namespace {

namespace fs = std::filesystem;
using dpsd::test::TempDir;

mode_t mode_of(const fs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    ADD_FAILURE() << "cannot lstat " << path;
    return 0;
  }
  return st.st_mode & 07777;
}

void make_dir(const fs::path& path, mode_t mode) {
  ASSERT_EQ(::mkdir(path.c_str(), mode), 0) << path;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;  // the umask must not decide
}

TEST(MakePrivateDir, FreshDirectoryIs0700) {
  TempDir tmp;
  const fs::path dir = tmp / "private";
  const mode_t old_umask = ::umask(0);  // 0700 must come from dpsd, not from the umask
  const Status status = make_private_dir(dir);
  ::umask(old_umask);
  ASSERT_TRUE(status.ok()) << status.error();
  EXPECT_TRUE(fs::is_directory(fs::symlink_status(dir)));
  EXPECT_EQ(mode_of(dir), 0700u);
}

TEST(MakePrivateDir, MissingRuntimeDirIsCreatedToo) {
  TempDir tmp;
  const fs::path dir = tmp / "run" / "dpsd" / "private";
  const Status status = make_private_dir(dir);
  ASSERT_TRUE(status.ok()) << status.error();
  EXPECT_EQ(mode_of(dir), 0700u);
}

TEST(MakePrivateDir, ExistingOpenDirectoryIsTightenedTo0700) {
  TempDir tmp;
  const fs::path dir = tmp / "private";
  make_dir(dir, 0755);
  const Status status = make_private_dir(dir);
  ASSERT_TRUE(status.ok()) << status.error();
  EXPECT_EQ(mode_of(dir), 0700u);
  // A trailing slash names the same entry.
  ASSERT_EQ(::chmod(dir.c_str(), 0750), 0);
  ASSERT_TRUE(make_private_dir(dir.string() + "/").ok());
  EXPECT_EQ(mode_of(dir), 0700u);
}

TEST(MakePrivateDir, SymlinkToOwnDirectoryIsRefusedAndTargetUntouched) {
  TempDir tmp;
  const fs::path target = tmp / "elsewhere";
  make_dir(target, 0755);
  const fs::path dir = tmp / "private";
  fs::create_directory_symlink(target, dir);

  const Status status = make_private_dir(dir);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error(), dir.string() + " is a symlink; refusing to use it");
  EXPECT_EQ(mode_of(target), 0755u) << "the symlink's target was chmod'ed";
  EXPECT_TRUE(fs::is_symlink(dir));
}

TEST(MakePrivateDir, DanglingSymlinkIsRefusedAndNothingIsCreatedAtItsTarget) {
  TempDir tmp;
  const fs::path dir = tmp / "private";
  fs::create_directory_symlink(tmp / "not-yet", dir);
  const Status status = make_private_dir(dir);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error(), dir.string() + " is a symlink; refusing to use it");
  EXPECT_FALSE(fs::exists(fs::symlink_status(tmp / "not-yet")));
}

TEST(MakePrivateDir, RegularFileIsRefused) {
  TempDir tmp;
  const fs::path dir = tmp / "private";
  test::write_file(dir, "x", 0644);
  const Status status = make_private_dir(dir);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error(), dir.string() + " is not a directory");
  EXPECT_EQ(mode_of(dir), 0644u);
}

TEST(MakePrivateDir, SymlinkedRuntimeDirIsRefused) {
  TempDir tmp;
  make_dir(tmp / "real", 0755);
  fs::create_directory_symlink(tmp / "real", tmp / "runtime");
  const Status status = make_private_dir(tmp / "runtime" / "private");
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error(), (tmp / "runtime").string() + " is a symlink; refusing to use it");
  EXPECT_FALSE(fs::exists(tmp / "real" / "private"));
}

TEST(MakePrivateDir, DirectoryOfAnotherUserIsRefused) {
  TempDir tmp;
  fs::path dir = tmp / "private";
  uid_t owner = 65534;
  if (::geteuid() == 0) {
    make_dir(dir, 0755);
    ASSERT_EQ(::chown(dir.c_str(), owner, owner), 0);
  } else {
    // Not root: /usr is a directory that is not ours (root's), and the check must refuse it
    // before anything is changed.
    dir = "/usr";
    owner = 0;
  }
  const mode_t before = mode_of(dir);
  const Status status = make_private_dir(dir);
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().find(" is owned by uid " + std::to_string(owner)), std::string::npos)
      << status.error();
  EXPECT_EQ(mode_of(dir), before);
  auto fd = open_private_dir(dir);
  EXPECT_FALSE(fd.ok());
}

TEST(OpenPrivateDir, AcceptsOnly0700DirectoriesThatAreNotSymlinks) {
  TempDir tmp;
  const fs::path dir = tmp / "private";
  make_dir(dir, 0700);
  auto fd = open_private_dir(dir);
  ASSERT_TRUE(fd.ok()) << fd.error();
  EXPECT_TRUE(fd->valid());

  ASSERT_EQ(::chmod(dir.c_str(), 0750), 0);
  auto open = open_private_dir(dir);
  ASSERT_FALSE(open.ok());
  EXPECT_EQ(open.error(), dir.string() + " has mode 0750; it must be 0700");

  const fs::path link = tmp / "link";
  ASSERT_EQ(::chmod(dir.c_str(), 0700), 0);
  fs::create_directory_symlink(dir, link);
  auto via_link = open_private_dir(link);
  ASSERT_FALSE(via_link.ok());
  EXPECT_EQ(via_link.error(), link.string() + " is a symlink; refusing to use it");
}

}  // namespace
}  // namespace dpsd::io
