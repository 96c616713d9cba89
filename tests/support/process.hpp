#pragma once
// A child process for tests, started without a shell (no quoting bugs, no extra PID between the
// test and the program it signals) and always reaped: the destructor stops it by PID.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace dpsd::test {

class TempDir;

struct ProcessOptions {
  // Added to (or replacing entries of) the parent's environment.
  std::map<std::string, std::string> env;
  // Names removed from the inherited environment (applied before `env`).
  std::vector<std::string> unset_env;
  // Working directory of the child; empty keeps the parent's.
  std::filesystem::path working_dir;
  // Where stdout/stderr go; empty means a file in a temp directory owned by the Process.
  std::filesystem::path stdout_path;
  std::filesystem::path stderr_path;
  // Put the child in its own process group, so a terminal's Ctrl-C reaches only the test.
  bool new_process_group = false;
};

class Process {
 public:
  // argv[0] is looked up in PATH, then in /usr/sbin and /sbin (mosquitto lives there and root's
  // PATH in a container does not always list it). Throws std::runtime_error if spawning fails.
  explicit Process(std::vector<std::string> argv, ProcessOptions opts = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  Process(Process&&) noexcept;
  Process& operator=(Process&&) noexcept;

  pid_t pid() const { return pid_; }
  // False once the child has exited (and been reaped).
  bool running();
  // Exit code, or 128 + signal number when it was killed; nullopt on timeout.
  std::optional<int> wait_for_exit(std::chrono::milliseconds timeout);
  // The exit status once known, without waiting.
  std::optional<int> exit_code() const { return exit_code_; }
  void signal(int sig);
  // SIGTERM, up to 3 s to exit, then SIGKILL. Returns the exit status (128 + 9 after SIGKILL).
  std::optional<int> stop();

  std::string stdout_text() const;
  std::string stderr_text() const;
  const std::filesystem::path& stdout_path() const { return stdout_path_; }
  const std::filesystem::path& stderr_path() const { return stderr_path_; }
  // "argv[0] argv[1] …", for failure messages.
  std::string command_line() const;

 private:
  bool reap(bool block);
  std::vector<std::string> argv_;
  std::unique_ptr<TempDir> output_dir_;
  std::filesystem::path stdout_path_;
  std::filesystem::path stderr_path_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

// Named apart from the integration fixture's own RunResult/run, which include this header.
// Runs a program to completion (bounded by `timeout`, then killed) and returns its exit code and
// output; convenient for CLI tools such as openssl or mosquitto_pub.
struct CommandResult {
  int exit_code = -1;  // 128 + signal when killed; -1 if it never finished (then killed)
  std::string out;
  std::string err;
};
CommandResult run_command(std::vector<std::string> argv, std::chrono::milliseconds timeout,
                          ProcessOptions opts = {});

}  // namespace dpsd::test
