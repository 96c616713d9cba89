#include "io/event_loop.hpp"

#include <system_error>

namespace dpsd::io {
namespace {

// Timer and Deferred hold their source from the first arm()/post() on; before that there is
// nothing to switch off and nothing is enabled.
void disable(sd_event_source* source) {
  if (source) sd_event_source_set_enabled(source, SD_EVENT_OFF);
}

bool source_enabled(sd_event_source* source) {
  if (!source) return false;
  int enabled = SD_EVENT_OFF;
  sd_event_source_get_enabled(source, &enabled);
  return enabled != SD_EVENT_OFF;
}

}  // namespace

EventLoop::EventLoop() {
  sd_event* raw = nullptr;
  const int rc = sd_event_new(&raw);
  if (rc < 0) throw std::system_error(-rc, std::generic_category(), "sd_event_new");
  event_.reset(raw);
}

int EventLoop::run() {
  return sd_event_loop(event_.get());
}
void EventLoop::exit(int code) {
  sd_event_exit(event_.get(), code);
}

std::uint64_t monotonic_now_usec(sd_event* event) {
  std::uint64_t now = 0;
  sd_event_now(event, CLOCK_MONOTONIC, &now);
  return now;
}

Timer::Timer(sd_event* event, Callback callback) : event_(event), callback_(std::move(callback)) {}

void Timer::arm(std::chrono::microseconds delay) {
  const std::uint64_t deadline =
      monotonic_now_usec(event_) + static_cast<std::uint64_t>(delay.count());
  if (source_) {
    sd_event_source_set_time(source_.get(), deadline);
    sd_event_source_set_enabled(source_.get(), SD_EVENT_ONESHOT);
    return;
  }
  sd_event_source* raw = nullptr;
  const int rc =
      sd_event_add_time(event_, &raw, CLOCK_MONOTONIC, deadline, 1000, &Timer::on_time, this);
  if (rc < 0) throw std::system_error(-rc, std::generic_category(), "sd_event_add_time");
  source_.reset(raw);
}

void Timer::cancel() {
  disable(source_.get());
}

bool Timer::armed() const {
  return source_enabled(source_.get());
}

int Timer::on_time(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
  auto* self = static_cast<Timer*>(userdata);
  // Copy: the callback may destroy or re-arm this timer.
  auto callback = self->callback_;
  callback();
  return 0;
}

Deferred::Deferred(sd_event* event, Callback callback)
    : event_(event), callback_(std::move(callback)) {}

void Deferred::post() {
  if (source_) {
    sd_event_source_set_enabled(source_.get(), SD_EVENT_ONESHOT);
    return;
  }
  sd_event_source* raw = nullptr;
  const int rc = sd_event_add_defer(event_, &raw, &Deferred::on_defer, this);
  if (rc < 0) throw std::system_error(-rc, std::generic_category(), "sd_event_add_defer");
  source_.reset(raw);
  sd_event_source_set_enabled(source_.get(), SD_EVENT_ONESHOT);
}

void Deferred::cancel() {
  disable(source_.get());
}

bool Deferred::pending() const {
  return source_enabled(source_.get());
}

int Deferred::on_defer(sd_event_source* /*source*/, void* userdata) {
  auto* self = static_cast<Deferred*>(userdata);
  // Copy: the callback may destroy this Deferred (and its owner) or post it again.
  auto callback = self->callback_;
  callback();
  return 0;
}

}  // namespace dpsd::io
