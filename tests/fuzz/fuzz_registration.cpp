// libFuzzer target: the whole core::Registration state machine, driven by fuzz bytes read as a
// sequence of events (connected, refused, DPS replies with the pending $rid or any topic, timer
// expiries, connection lost). Timers are modelled like sd-event does: StartTimer arms (or re-arms)
// one, CancelTimer disarms it, and only an armed timer can fire.
// Checked after every event: no crash or UB (ASan/UBSan), no step that does not return (libFuzzer's
// -timeout), at most one Finished and finished() agrees with it, sane timer delays, requests only
// on the register/poll topics, and liveness: while not finished, some timer is armed, so the
// attempt always ends on its own even if DPS never answers again.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>
#include <variant>

#include "core/provisioner.hpp"
#include "core/topics.hpp"

namespace {

using namespace dpsd::core;

class Bytes {
 public:
  Bytes(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  std::uint8_t byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  // A length-prefixed string of at most 255 bytes.
  std::string text() {
    std::size_t n = byte();
    if (n > size_ - pos_) n = size_ - pos_;
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

const char* const kBodies[] = {
    R"({"operationId":"4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d","status":"assigning"})",
    R"({"operationId":"4.d0a671905ea5b2c8.42d78160","status":"assigned","registrationState":{"registrationId":"dev","assignedHub":"contoso.azure-devices.net","deviceId":"my-device-id1","status":"assigned","substatus":"initialAssignment","payload":{"a":1}}})",
    R"({"operationId":"x","status":"failed","registrationState":{"registrationId":"dev","status":"failed","errorCode":400207,"errorMessage":"Custom allocation failed"}})",
    R"({"operationId":"","status":"disabled","registrationState":{"registrationId":"dev","status":"disabled"}})",
    R"({"operationId":"x","status":"unassigned"})",
    R"({"errorCode":401002,"trackingId":"8ad0463c","message":"Invalid certificate.","timestampUtc":"2020-04-10T05:24:22Z"})",
    R"({"operationId":)",
    "123",
    "",
};
const int kStatuses[] = {200, 202, 429, 500, 503, 401, 403, 404, 400, 409, 302, 999, 100};

struct Model {
  std::set<TimerId> armed;
  int finished_actions = 0;
  std::string pending_rid;

  void apply(const Actions& actions) {
    for (const auto& action : actions) {
      if (const auto* start = std::get_if<StartTimer>(&action)) {
        if (start->delay.count() < 0 || start->delay > std::chrono::hours(2)) std::abort();
        armed.insert(start->id);
      } else if (const auto* cancel = std::get_if<CancelTimer>(&action)) {
        armed.erase(cancel->id);
      } else if (const auto* publish = std::get_if<Publish>(&action)) {
        const std::string_view topic = publish->topic;
        if (!topic.starts_with("$dps/registrations/PUT/iotdps-register/?$rid=") &&
            !topic.starts_with("$dps/registrations/GET/iotdps-get-operationstatus/?$rid="))
          std::abort();
        const auto rid = topic.find("$rid=") + 5;
        pending_rid = std::string(topic.substr(rid, topic.find('&', rid) - rid));
      } else if (std::holds_alternative<Finished>(action)) {
        ++finished_actions;
        armed.clear();  // the adapter tears the attempt down
      } else if (const auto* subscribe = std::get_if<Subscribe>(&action)) {
        if (subscribe->topic != kResponseFilter) std::abort();
      }
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Bytes in(data, size);
  RegistrationRequest request;
  request.id_scope = "0ne00000000";
  request.registration_id = "dev";
  request.client_version = "0.1.0";
  if (in.byte() & 1) request.payload_json = R"({"modelId":"dtmi:x;1"})";
  Registration registration(request);
  Model model;
  model.apply(registration.start());

  for (int step = 0; step < 512 && !in.empty(); ++step) {
    const std::uint8_t op = in.byte();
    Actions actions;
    switch (op % 7) {
      case 0:
        actions = registration.handle(Connected{});
        break;
      case 1:
        actions = registration.handle(ConnectRefused{static_cast<int>(in.byte() % 8)});
        break;
      case 2: {  // a well-formed reply: pending or stale $rid, a known status, optional retry-after
        const std::uint8_t shape = in.byte();
        const int status = kStatuses[(shape >> 4) % std::size(kStatuses)];
        std::string topic = std::string(kResponsePrefix) + std::to_string(status) + "/?$rid=" +
                            ((shape & 1) ? model.pending_rid : std::to_string(in.byte()));
        if (shape & 2) topic += "&retry-after=" + std::to_string(in.byte() % 100);
        if (shape & 4) topic += "&retry-after=" + in.text();
        std::string body =
            (shape & 8) ? in.text() : std::string(kBodies[in.byte() % std::size(kBodies)]);
        actions = registration.handle(MessageReceived{std::move(topic), std::move(body)});
        break;
      }
      case 3: {  // anything at all
        std::string topic = in.text();
        actions = registration.handle(MessageReceived{std::move(topic), in.text()});
        break;
      }
      case 4:
      case 5: {  // the next armed timer expires
        if (model.armed.empty()) break;
        auto it = model.armed.begin();
        std::advance(it, in.byte() % model.armed.size());
        const TimerId id = *it;
        model.armed.erase(it);
        actions = registration.handle(TimerFired{id});
        break;
      }
      case 6:
        actions = registration.handle(ConnectionLost{in.text()});
        break;
    }
    model.apply(actions);
    if (model.finished_actions > 1) std::abort();
    if (registration.finished() != (model.finished_actions == 1)) std::abort();
    if (!registration.finished() && model.armed.empty()) std::abort();  // could wait forever
  }
  // Losing the connection always ends an attempt that is still running.
  if (!registration.finished()) {
    model.apply(registration.handle(ConnectionLost{"fuzz: end"}));
    if (!registration.finished() || model.finished_actions != 1) std::abort();
  }
  return 0;
}
