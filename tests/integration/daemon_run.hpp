#pragma once
// The long-running daemon for fidelity and hostile tests: dpsd started with --no-bus against a
// Device, telling a NotifyCapture (support/notify_socket.hpp) what it does, and helpers over what
// it logged.
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "dpsd_fixture.hpp"
#include "support/notify_socket.hpp"

namespace dpsd::test {

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
