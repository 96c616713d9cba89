#pragma once
// A TLS front end between a device and the DpsEmulator that plays DPS's distributed front end
// (design.md, "What the real service does"): the subscription becomes active late, so a request
// published before the SUBACK may go unanswered. A mosquitto plugin cannot delay a SUBACK, so
// this relay does it: it terminates TLS with the emulator's server certificate (devices keep
// trusting emulator.ca_path() and host "localhost"), opens its own TLS connection to the
// emulator, parses MQTT framing both ways, holds each SUBACK (and everything after it) for
// `suback_delay`, and drops every client PUBLISH that arrives before it has forwarded the
// SUBACK, without any PUBACK, counting them.
//
// One thread per connection pair; the destructor stops all of them, bounded by the relay's poll
// interval and the socket timeouts.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace dpsd::test {

class DpsEmulator;

struct FrontEndOptions {
  std::chrono::milliseconds suback_delay{1500};
};

class DpsFrontEnd {
 public:
  // Listens on a free 127.0.0.1 port at once; throws std::runtime_error on failure.
  explicit DpsFrontEnd(const DpsEmulator& emulator, FrontEndOptions options = {});
  ~DpsFrontEnd();
  DpsFrontEnd(const DpsFrontEnd&) = delete;
  DpsFrontEnd& operator=(const DpsFrontEnd&) = delete;

  std::uint16_t port() const { return port_; }
  // Connections accepted from devices.
  int connections() const { return connections_.load(); }
  // Client PUBLISHes dropped because they came before the SUBACK was forwarded.
  int dropped_publishes() const { return dropped_.load(); }
  // Client PUBLISHes forwarded to the emulator.
  int forwarded_publishes() const { return forwarded_.load(); }
  // SUBACKs forwarded to devices (after the delay).
  int subacks() const { return subacks_.load(); }

 private:
  struct Impl;
  void accept_loop();
  void relay(int client_fd);

  std::unique_ptr<Impl> impl_;
  FrontEndOptions options_;
  std::uint16_t port_ = 0;
  std::uint16_t upstream_port_ = 0;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> dropped_{0};
  std::atomic<int> forwarded_{0};
  std::atomic<int> subacks_{0};
  std::mutex threads_mutex_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace dpsd::test
