#include "support/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <utility>

#include "support/files.hpp"
#include "support/temp_dir.hpp"

extern char** environ;

namespace dpsd::test {
namespace {

using namespace std::chrono_literals;

std::string resolve_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::string all = path;
    std::size_t start = 0;
    while (start <= all.size()) {
      std::size_t end = all.find(':', start);
      if (end == std::string::npos) end = all.size();
      dirs.push_back(all.substr(start, end - start));
      start = end + 1;
    }
  }
  dirs.insert(dirs.end(), {"/usr/local/sbin", "/usr/sbin", "/sbin"});
  for (const auto& dir : dirs) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  throw std::runtime_error("program not found in PATH or sbin: " + name);
}

std::vector<std::string> build_env(const ProcessOptions& opts) {
  std::map<std::string, std::string> merged;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry = *e;
    auto eq = entry.find('=');
    if (eq == std::string::npos) continue;
    merged[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  for (const auto& name : opts.unset_env) merged.erase(name);
  for (const auto& [k, v] : opts.env) merged[k] = v;
  std::vector<std::string> out;
  out.reserve(merged.size());
  for (const auto& [k, v] : merged) out.push_back(k + "=" + v);
  return out;
}

std::vector<char*> c_array(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// posix_spawn's attribute and file-action objects need explicit destroy calls.
struct SpawnAttr {
  posix_spawnattr_t attr;
  SpawnAttr() { posix_spawnattr_init(&attr); }
  ~SpawnAttr() { posix_spawnattr_destroy(&attr); }
  SpawnAttr(const SpawnAttr&) = delete;
  SpawnAttr& operator=(const SpawnAttr&) = delete;
};
struct SpawnActions {
  posix_spawn_file_actions_t actions;
  SpawnActions() { posix_spawn_file_actions_init(&actions); }
  ~SpawnActions() { posix_spawn_file_actions_destroy(&actions); }
  SpawnActions(const SpawnActions&) = delete;
  SpawnActions& operator=(const SpawnActions&) = delete;
};

}  // namespace

Process::Process(std::vector<std::string> argv, ProcessOptions opts) : argv_(std::move(argv)) {
  if (argv_.empty()) throw std::invalid_argument("Process: empty argv");
  if (opts.stdout_path.empty() || opts.stderr_path.empty()) {
    output_dir_ = std::make_unique<TempDir>("dpsd-proc");
  }
  stdout_path_ = opts.stdout_path.empty() ? output_dir_->path() / "stdout" : opts.stdout_path;
  stderr_path_ = opts.stderr_path.empty() ? output_dir_->path() / "stderr" : opts.stderr_path;

  const std::string program = resolve_program(argv_[0]);
  std::vector<std::string> args = argv_;
  std::vector<std::string> env = build_env(opts);
  auto c_args = c_array(args);
  auto c_env = c_array(env);

  SpawnActions fa;
  posix_spawn_file_actions_addopen(&fa.actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa.actions, STDOUT_FILENO, stdout_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa.actions, STDERR_FILENO, stderr_path_.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (!opts.working_dir.empty()) {
    posix_spawn_file_actions_addchdir_np(&fa.actions, opts.working_dir.c_str());
  }

  // The test (or dps-emulator-run, which sigwaits) may have signals blocked or ignored; a child
  // inheriting that would ignore our SIGTERM, so reset the mask and every disposition.
  SpawnAttr sa;
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&sa.attr, &empty);
  sigset_t all;
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  posix_spawnattr_setsigdefault(&sa.attr, &all);
  if (opts.new_process_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&sa.attr, 0);
  }
  posix_spawnattr_setflags(&sa.attr, flags);

  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, program.c_str(), &fa.actions, &sa.attr, c_args.data(), c_env.data());
  if (rc != 0) {
    throw std::runtime_error("posix_spawn " + program + ": " + std::strerror(rc));
  }
  pid_ = pid;
}

Process::~Process() {
  try {
    stop();
  } catch (...) {  // a destructor must not throw; stop() only throws on impossible states
  }
}

Process::Process(Process&& other) noexcept
    : argv_(std::move(other.argv_)),
      output_dir_(std::move(other.output_dir_)),
      stdout_path_(std::move(other.stdout_path_)),
      stderr_path_(std::move(other.stderr_path_)),
      pid_(std::exchange(other.pid_, -1)),
      exit_code_(other.exit_code_) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    stop();
    argv_ = std::move(other.argv_);
    output_dir_ = std::move(other.output_dir_);
    stdout_path_ = std::move(other.stdout_path_);
    stderr_path_ = std::move(other.stderr_path_);
    pid_ = std::exchange(other.pid_, -1);
    exit_code_ = other.exit_code_;
  }
  return *this;
}

bool Process::reap(bool block) {
  if (pid_ <= 0) return true;
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  if (r < 0) {
    // ECHILD: someone else reaped it (e.g. SIGCHLD set to SIG_IGN); treat as gone.
    exit_code_ = -1;
  } else if (WIFEXITED(status)) {
    exit_code_ = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    exit_code_ = 128 + WTERMSIG(status);
  } else {
    return false;  // stopped/continued: still alive
  }
  pid_ = -1;
  return true;
}

bool Process::running() {
  return !reap(false);
}

std::optional<int> Process::wait_for_exit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (reap(false)) return exit_code_;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

void Process::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

std::optional<int> Process::stop() {
  if (pid_ <= 0) return exit_code_;
  if (reap(false)) return exit_code_;
  ::kill(pid_, SIGTERM);
  if (auto code = wait_for_exit(3s)) return code;
  ::kill(pid_, SIGKILL);
  reap(true);
  return exit_code_;
}

std::string Process::stdout_text() const {
  try {
    return read_file(stdout_path_);
  } catch (const std::exception&) {
    return {};
  }
}

std::string Process::stderr_text() const {
  try {
    return read_file(stderr_path_);
  } catch (const std::exception&) {
    return {};
  }
}

std::string Process::command_line() const {
  std::string out;
  for (const auto& a : argv_) {
    if (!out.empty()) out += ' ';
    out += a;
  }
  return out;
}

CommandResult run_command(std::vector<std::string> argv, std::chrono::milliseconds timeout,
                          ProcessOptions opts) {
  Process p(std::move(argv), std::move(opts));
  CommandResult result;
  if (auto code = p.wait_for_exit(timeout)) {
    result.exit_code = *code;
  } else {
    p.stop();
    result.exit_code = -1;
  }
  result.out = p.stdout_text();
  result.err = p.stderr_text();
  return result;
}

}  // namespace dpsd::test
