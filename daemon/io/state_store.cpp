#include "io/state_store.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "core/mqtt_inbound_gate.hpp"
#include "io/regular_file.hpp"
#include "io/unique_fd.hpp"

namespace dpsd::io {
namespace {

namespace fs = std::filesystem;

// The state file is a few hundred bytes, plus the payload DPS may return, which arrives in one
// reply of at most core::kMaxInboundPacket (128 KiB) bytes. Twice that leaves room for our own
// fields and escaping; anything larger is not a file dpsd wrote and is not worth reading into
// memory. (Not 64 KiB: dpsd would then refuse a state file it wrote itself after a large
// returned payload, and register again at every start.)
constexpr std::size_t kMaxStateFileSize = 2 * core::kMaxInboundPacket;

// Unlinks the temp file when it goes out of scope, unless it was renamed into place; so every
// early return below leaves nothing behind.
class TempFileGuard {
 public:
  explicit TempFileGuard(std::string path) : path_(std::move(path)) {}
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;
  ~TempFileGuard() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

std::string describe(int err) {
  return std::system_category().message(err);
}

Error os_error(std::string_view what, const fs::path& path, int err) {
  std::string message(what);
  message += ' ';
  message += path.string();
  message += ": ";
  message += describe(err);
  return Error{std::move(message)};
}

fs::path directory_of(const fs::path& path) {
  const fs::path parent = path.parent_path();
  return parent.empty() ? fs::path(".") : parent;
}

// ".state.json.XXXXXX": hidden, in the same directory (so rename is atomic), and recognisable
// as ours by remove_stale_temps.
std::string temp_prefix(const fs::path& path) {
  return "." + path.filename().string() + ".";
}

// mkdir -p with 0755 for each directory it creates. The explicit chmod makes the mode
// independent of the process umask: other services must be able to reach iothub.env.
Status make_directories(const fs::path& dir) {
  fs::path current;
  for (const auto& part : dir) {
    current /= part;
    if (part == "/" || part.empty()) continue;
    if (::mkdir(current.c_str(), 0755) == 0) {
      if (::chmod(current.c_str(), 0755) != 0) return os_error("chmod", current, errno);
      continue;
    }
    const int err = errno;
    if (err != EEXIST) return os_error("create directory", current, err);
    struct stat st {};
    if (::stat(current.c_str(), &st) != 0) return os_error("stat", current, errno);
    if (!S_ISDIR(st.st_mode)) return os_error("create directory", current, ENOTDIR);
  }
  return ok_status();
}

// A crash or power cut between creating the temp file and renaming it leaves the temp behind.
// dpsd is the only writer of its state and env files, so any such leftover is stale.
void remove_stale_temps(const fs::path& path) {
  const fs::path dir = directory_of(path);
  const std::string prefix = temp_prefix(path);
  std::error_code ec;
  std::vector<fs::path> stale;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() == prefix.size() + 6 && name.compare(0, prefix.size(), prefix) == 0) {
      stale.push_back(it->path());
    }
  }
  for (const auto& p : stale) ::unlink(p.c_str());
}

}  // namespace

Status write_file_atomically(const fs::path& path, const std::string& content, unsigned mode) {
  const fs::path dir = directory_of(path);
  std::string temp = (dir / temp_prefix(path)).string() + "XXXXXX";

  UniqueFd fd(::mkostemp(temp.data(), O_CLOEXEC));
  if (!fd.valid()) return os_error("create temporary file for", path, errno);
  TempFileGuard guard(temp);

  const char* data = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    const ssize_t n = ::write(fd.get(), data, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error("write", path, errno);
    }
    // A regular file only returns 0 for a zero-length write; do not spin if it ever does.
    if (n == 0) return os_error("write", path, EIO);
    data += n;
    left -= static_cast<std::size_t>(n);
  }
  // mkostemp creates 0600; set the requested mode on the fd so the umask plays no part.
  if (::fchmod(fd.get(), static_cast<mode_t>(mode & 07777)) != 0) {
    return os_error("chmod", path, errno);
  }
  if (::fsync(fd.get()) != 0) return os_error("fsync", path, errno);
  if (const int err = fd.close_checked(); err != 0) return os_error("close", path, err);

  if (::rename(temp.c_str(), path.c_str()) != 0) return os_error("rename to", path, errno);
  guard.release();

  // The rename itself is durable only once the directory entry is on disk.
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd.valid()) return os_error("open directory", dir, errno);
  if (::fsync(dir_fd.get()) != 0) {
    const int err = errno;
    // Some filesystems cannot sync a directory at all; the file is in place and there is
    // nothing more to do, so that is not a failure of the write.
    if (err != EINVAL && err != ENOTSUP) return os_error("fsync directory", dir, err);
  }
  return ok_status();
}

StateStore::StateStore(fs::path state_dir, fs::path runtime_dir)
    : state_dir_(std::move(state_dir)), runtime_dir_(std::move(runtime_dir)) {}

Status StateStore::save(const core::Assignment& assignment) {
  if (auto made = make_directories(state_dir_); !made) return made;
  remove_stale_temps(state_path());
  if (auto written = write_file_atomically(state_path(), core::serialize_state(assignment), 0644);
      !written) {
    return written;
  }
  return write_env(assignment);
}

Status StateStore::write_env(const core::Assignment& assignment) {
  if (auto made = make_directories(runtime_dir_); !made) return made;
  remove_stale_temps(env_path());
  return write_file_atomically(env_path(), core::render_env_file(assignment), 0644);
}

std::optional<core::Assignment> StateStore::load(std::string* problem) const {
  std::string ignored;
  std::string& why = problem != nullptr ? *problem : ignored;
  why.clear();
  const fs::path path = state_path();
  const auto fail = [&why, &path](std::string reason) -> std::optional<core::Assignment> {
    why = path.string() + ": " + std::move(reason);
    return std::nullopt;
  };

  // O_NONBLOCK|O_NOFOLLOW (open_regular_file): a FIFO planted at state.json would
  // otherwise block this open() before READY, with every signal blocked, so not even SIGTERM
  // could stop the daemon; dpsd itself only ever renames a regular file into place.
  int open_errno = 0;
  auto file = open_regular_file(path.string(), "", false, &open_errno);
  // Only a missing file means "never provisioned"; anything else is worth a log line.
  if (!file && open_errno == ENOENT) return std::nullopt;
  if (!file) return fail(file.error());
  std::string text;
  if (auto read = read_opened_file(*file, kMaxStateFileSize, "", text); !read) {
    return fail(read.error());
  }

  auto parsed = core::parse_state(text);
  if (!parsed) {
    // parse_state names the file "state.json"; say which one instead.
    std::string reason = parsed.error();
    constexpr std::string_view kPrefix = "state.json: ";
    if (reason.compare(0, kPrefix.size(), kPrefix) == 0) reason.erase(0, kPrefix.size());
    return fail(std::move(reason));
  }
  return std::move(*parsed);
}

}  // namespace dpsd::io
