#pragma once
// RAII for sd-event: the one loop on the one thread, and its sources. Every adapter holds its
// sources in EventSourcePtr so destroying the adapter disables and frees them.
#include <systemd/sd-event.h>

#include <chrono>
#include <functional>
#include <memory>

#include "io/c_ptr.hpp"

namespace dpsd::io {

using EventSourcePtr = CPtr<sd_event_source, sd_event_source_disable_unref>;
using EventPtr = CPtr<sd_event, sd_event_unref>;

// A one-shot CLOCK_MONOTONIC timer that calls a std::function; re-arming replaces the deadline.
class Timer {
 public:
  using Callback = std::function<void()>;
  Timer(sd_event* event, Callback callback);
  void arm(std::chrono::microseconds delay);
  void cancel();
  bool armed() const;

 private:
  static int on_time(sd_event_source* source, uint64_t usec, void* userdata);
  sd_event* event_;
  Callback callback_;
  EventSourcePtr source_;
};

// The one way for a callback to destroy its owner: instead of calling a handler from deep inside
// its own stack (a relay's pump, libmosquitto's read loop), an adapter posts it here and sd-event
// runs it from the loop, once, at the next iteration. The handler may then destroy the owner and
// this Deferred with it: sd-event keeps the source alive until its dispatch returns, and the
// callback is copied before it runs. post() while pending keeps one pending run.
class Deferred {
 public:
  using Callback = std::function<void()>;
  Deferred(sd_event* event, Callback callback);
  void post();  // throws std::system_error when sd_event_add_defer fails
  void cancel();
  bool pending() const;

 private:
  static int on_defer(sd_event_source* source, void* userdata);
  sd_event* event_;
  Callback callback_;
  EventSourcePtr source_;
};

class EventLoop {
 public:
  EventLoop();  // throws std::system_error when sd_event_new fails
  sd_event* get() const { return event_.get(); }
  int run();  // sd_event_loop
  void exit(int code);

 private:
  EventPtr event_;
};

std::uint64_t monotonic_now_usec(sd_event* event);

}  // namespace dpsd::io
