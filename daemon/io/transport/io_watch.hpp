#pragma once
// One fd watched on the loop, calling a std::function: the stages' RAII handle for
// sd_event_add_io, so none of them repeats the source bookkeeping or a static trampoline.
#include <systemd/sd-event.h>

#include <cstdint>
#include <functional>

#include "core/expected.hpp"
#include "io/event_loop.hpp"

namespace dpsd::io::transport {

class IoWatch {
 public:
  using Callback = std::function<void()>;
  IoWatch(sd_event* event, Callback callback) : event_(event), callback_(std::move(callback)) {}

  // Starts watching fd for events (EPOLLIN/EPOLLOUT), replacing what was watched before.
  // Fails with "sd_event_add_io: <errno text>".
  Status watch(int fd, std::uint32_t events);
  // 0 turns the source off: a direction without work must not keep level-triggered epoll busy.
  void set_events(std::uint32_t events);
  void stop() { source_.reset(); }
  bool watching() const { return source_ != nullptr; }

 private:
  static int on_io(sd_event_source* source, int fd, std::uint32_t revents, void* userdata);

  sd_event* event_;
  Callback callback_;
  EventSourcePtr source_;
};

}  // namespace dpsd::io::transport
