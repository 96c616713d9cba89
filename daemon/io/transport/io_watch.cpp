#include "io/transport/io_watch.hpp"

#include "core/errno_text.hpp"

namespace dpsd::io::transport {

Status IoWatch::watch(int fd, std::uint32_t events) {
  source_.reset();
  sd_event_source* raw = nullptr;
  const int rc = sd_event_add_io(event_, &raw, fd, events, &IoWatch::on_io, this);
  if (rc < 0) return Error{Errc::Io, "sd_event_add_io: " + core::errno_text(rc)};
  source_.reset(raw);
  if (events == 0) sd_event_source_set_enabled(raw, SD_EVENT_OFF);
  return ok_status();
}

void IoWatch::set_events(std::uint32_t events) {
  if (!source_) return;
  if (events == 0) {
    sd_event_source_set_enabled(source_.get(), SD_EVENT_OFF);
    return;
  }
  sd_event_source_set_io_events(source_.get(), events);
  sd_event_source_set_enabled(source_.get(), SD_EVENT_ON);
}

int IoWatch::on_io(sd_event_source* /*source*/, int /*fd*/, std::uint32_t /*revents*/,
                   void* userdata) {
  auto* self = static_cast<IoWatch*>(userdata);
  // Copy: the callback may destroy this watch and its owner (a stage that reports its end).
  auto callback = self->callback_;
  callback();
  return 0;
}

}  // namespace dpsd::io::transport
