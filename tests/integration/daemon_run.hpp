#pragma once
// The long-running daemon for fidelity and hostile tests: a datagram socket playing systemd's
// NOTIFY_SOCKET (every raw datagram kept, so a test can look for injected lines), dpsd started
// with --no-bus against a Device, and helpers over what it logged.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "dpsd_fixture.hpp"

namespace dpsd::test {

class NotifyCapture {
 public:
  explicit NotifyCapture(const std::filesystem::path& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("bind notify socket " + path.string());
    }
  }
  ~NotifyCapture() { ::close(fd_); }
  NotifyCapture(const NotifyCapture&) = delete;
  NotifyCapture& operator=(const NotifyCapture&) = delete;
  const std::filesystem::path& path() const { return path_; }

  // Every datagram so far, raw.
  const std::vector<std::string>& datagrams() {
    std::vector<char> buffer(1 << 16);
    for (;;) {
      const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
      if (n <= 0) break;
      datagrams_.emplace_back(buffer.data(), static_cast<std::size_t>(n));
    }
    return datagrams_;
  }
  // The value of every STATUS= line, in order.
  std::vector<std::string> statuses() {
    std::vector<std::string> out;
    for (const auto& d : datagrams()) {
      std::istringstream lines(d);
      for (std::string line; std::getline(lines, line);) {
        if (line.rfind("STATUS=", 0) == 0) out.push_back(line.substr(7));
      }
    }
    return out;
  }
  bool any_status(const std::function<bool(const std::string&)>& pred) {
    for (const auto& s : statuses()) {
      if (pred(s)) return true;
    }
    return false;
  }
  std::string all_statuses() {
    std::string out;
    for (const auto& s : statuses()) out += "  STATUS=" + s + "\n";
    return out;
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::vector<std::string> datagrams_;
};

// dpsd as a daemon (no bus) for `device`, telling `notify` what it does.
inline std::unique_ptr<Process> start_daemon(const Device& device, const NotifyCapture& notify) {
  ProcessOptions options;
  options.env["NOTIFY_SOCKET"] = notify.path().string();
  return std::make_unique<Process>(
      std::vector<std::string>{DPSD_BINARY, "--no-bus", "--config", device.config_path().string()},
      options);
}

// Replaces `from` (a regular expression) in the device's config.toml.
inline void edit_config(const Device& device, const std::string& from, const std::string& to) {
  std::string text = read_file(device.config_path());
  text = std::regex_replace(text, std::regex(from), to);
  write_file(device.config_path(), text);
}

// Every number X in "<prefix>X s" in `text`.
inline std::vector<double> seconds_after(const std::string& text, const std::string& prefix) {
  std::vector<double> out;
  const std::regex re(prefix + "([0-9]+(\\.[0-9]+)?) ?s");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator();
       ++it) {
    out.push_back(std::stod((*it)[1]));
  }
  return out;
}

// VmRSS of a live process in KiB, or -1 once it is gone.
inline long rss_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// Bytes in regular files under `dir` (0 when it does not exist).
inline std::uintmax_t bytes_under(const std::filesystem::path& dir) {
  std::uintmax_t total = 0;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return 0;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it->is_regular_file(ec)) total += it->file_size(ec);
  }
  return total;
}

}  // namespace dpsd::test
