#include "support/notify_socket.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <sstream>
#include <stdexcept>

namespace dpsd::test {

NotifyCapture::NotifyCapture(std::filesystem::path path) : path_(std::move(path)) {
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  (void)std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (fd_ >= 0) ::close(fd_);
    throw std::runtime_error("bind notify socket " + path_.string());
  }
}

NotifyCapture::~NotifyCapture() {
  ::close(fd_);
}

const std::vector<std::string>& NotifyCapture::datagrams() {
  // sd_notify sends one datagram per call; 64 KiB holds any of them whole.
  std::vector<char> buffer(1 << 16);
  for (;;) {
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
    if (n <= 0) break;
    datagrams_.emplace_back(buffer.data(), static_cast<std::size_t>(n));
  }
  return datagrams_;
}

bool NotifyCapture::ready() {
  for (const auto& d : datagrams()) {
    if (d.find("READY=1") != std::string::npos) return true;
  }
  return false;
}

std::vector<std::string> NotifyCapture::statuses() {
  std::vector<std::string> out;
  for (const auto& d : datagrams()) {
    std::istringstream lines(d);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("STATUS=", 0) == 0) out.push_back(line.substr(7));
    }
  }
  return out;
}

std::string NotifyCapture::last_status() {
  const auto all = statuses();
  return all.empty() ? std::string() : all.back();
}

bool NotifyCapture::any_status(const std::function<bool(const std::string&)>& pred) {
  for (const auto& s : statuses()) {
    if (pred(s)) return true;
  }
  return false;
}

std::string NotifyCapture::all_statuses() {
  std::string out;
  for (const auto& s : statuses()) out += "  STATUS=" + s + "\n";
  return out;
}

}  // namespace dpsd::test
