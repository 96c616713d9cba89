#pragma once
// systemd's NOTIFY_SOCKET, played by a test: a datagram socket at a path the test chooses, which
// keeps every datagram the daemon sent, raw (so a test can also look for injected lines), and
// answers questions about READY=1 and STATUS=.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace dpsd::test {

class NotifyCapture {
 public:
  // Binds the socket; throws std::runtime_error naming the path when it cannot.
  explicit NotifyCapture(std::filesystem::path path);
  ~NotifyCapture();
  NotifyCapture(const NotifyCapture&) = delete;
  NotifyCapture& operator=(const NotifyCapture&) = delete;

  // For NOTIFY_SOCKET=.
  const std::filesystem::path& path() const { return path_; }

  // Every datagram so far, raw, in the order received.
  const std::vector<std::string>& datagrams();
  // True once any datagram carried READY=1.
  bool ready();
  // The value of every STATUS= line, in order.
  std::vector<std::string> statuses();
  // The latest STATUS= value; empty when there was none.
  std::string last_status();
  bool any_status(const std::function<bool(const std::string&)>& pred);
  // Every STATUS= line, one per line, for failure messages.
  std::string all_statuses();

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::vector<std::string> datagrams_;
};

}  // namespace dpsd::test
