#pragma once
// A small HTTP CONNECT proxy for tests, on a free loopback port, running in its own thread
// (the code under test runs its own event loop on the test's thread, or is another process).
// It answers 407 without the expected Basic credentials, 403 for ports it is not allowed to
// reach (like tinyproxy's ConnectPort), 502 when the target refuses, and otherwise relays bytes
// both ways. It records every request head so tests can check what the client sent.
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace dpsd::test {

struct ConnectProxyOptions {
  std::optional<std::string> user;  // set: require "Proxy-Authorization: Basic base64(user:pass)"
  std::string password;
  std::set<std::uint16_t> allowed_ports;  // empty: any port
};

class ConnectProxy {
 public:
  explicit ConnectProxy(ConnectProxyOptions options = {});
  ~ConnectProxy();  // stops the thread, closes every socket
  ConnectProxy(const ConnectProxy&) = delete;
  ConnectProxy& operator=(const ConnectProxy&) = delete;

  std::uint16_t port() const { return port_; }
  // "http://127.0.0.1:PORT", with "user:pass@" when given.
  std::string url(const std::string& userinfo = {}) const;
  // Each request head received so far (up to the blank line), in order.
  std::vector<std::string> requests() const;
  // How many tunnels were established (200 sent).
  int tunnels() const { return tunnels_.load(); }

 private:
  void run();
  void serve(int client);

  ConnectProxyOptions options_;
  int listener_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::uint16_t port_ = 0;
  mutable std::mutex mutex_;
  std::vector<std::string> requests_;
  std::atomic<int> tunnels_{0};
  std::vector<std::thread> workers_;
  std::thread thread_;
};

}  // namespace dpsd::test
