#include "bus_client.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

namespace dpsctl {
namespace {

using Clock = std::chrono::steady_clock;

// Between two attempts to reach the bus again after it went away: soon at first (a restarted
// dbus-daemon is back within a second), then less often for a bus that stays away.
constexpr std::chrono::milliseconds kFirstReconnectDelay{200};
constexpr std::chrono::milliseconds kMaxReconnectDelay{5000};
// sd-bus's own default for a method call; a wait's calls are cut to what is left of --timeout.
constexpr std::chrono::microseconds kMethodCallTimeout{25'000'000};

bool passed(const Client::Deadline& deadline) {
  return deadline && Clock::now() >= *deadline;
}

// Milliseconds for poll() until `until`, rounded up so we never wake just before it.
int poll_ms(Clock::time_point until) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, INT_MAX));
}

// The synchronous calls' failures in dpsctl's terms.
template <typename Call>
auto checked(const std::string& what, Call&& call) {
  try {
    return call();
  } catch (const sdbus::Error& e) {
    throw call_failure(e, what);
  }
}

}  // namespace

struct Client::Link {
  // Declared first, destroyed last: the proxies and the match refer to it.
  std::unique_ptr<sdbus::IConnection> connection;
  std::unique_ptr<DpsdProxy> dpsd;
  std::unique_ptr<NameOwnerWatch> owner;
};

Client::Client() {
  try {
    open_link();
  } catch (const sdbus::Error& e) {
    throw connect_failure(e);
  }
}

Client::~Client() = default;

void Client::open_link() {
  auto link = std::make_unique<Link>();
  link->connection = sdbus::createSystemBusConnection();
  link->dpsd = std::make_unique<DpsdProxy>(*link->connection);
  link_ = std::move(link);
}

Properties Client::get_all() {
  return checked("cannot read dpsd's properties", [&] { return link_->dpsd->get_all(); });
}

std::uint64_t Client::reprovision() {
  return checked("Reprovision", [&] { return link_->dpsd->Reprovision(); });
}

Properties Client::connection_info() {
  return checked("GetConnectionInfo",
                 [&] { return to_properties(link_->dpsd->GetConnectionInfo()); });
}

void Client::watch() {
  checked("cannot watch dpsd on the bus", [&] { subscribe(); });
}

void Client::subscribe() {
  link_->dpsd->watch([this](const std::string& sender, const Properties& changed) {
    on_properties(sender, changed);
  });
  link_->owner = std::make_unique<NameOwnerWatch>(
      *link_->connection, kBusName, [this](const std::string& owner) { on_owner(owner); });
  owner_ = link_->owner->current_owner();
}

// Both handlers run inside processPendingRequest: they only record, the loop acts.
void Client::on_properties(const std::string& sender, const Properties& changed) {
  if (owner_.empty() || sender != owner_) return;
  for (const auto& [name, value] : changed) props_[name] = value;
  present_ = true;
  changed_ = true;
}

void Client::on_owner(const std::string& owner) {
  owner_ = owner;
  changed_ = true;
  // dpsd (re)appeared: its state is read afresh (dpsd exports the object before it takes the
  // name, so GetAll finds it). Gone: absent until a new owner shows up.
  refresh_ = !owner_.empty();
  if (owner_.empty()) present_ = false;
}

bool Client::process() {
  try {
    return link_->connection->processPendingRequest();
  } catch (const sdbus::Error&) {
    lose_link();  // sd_bus_process fails only once the connection is closed
    return false;
  }
}

void Client::lose_link() {
  link_.reset();
  owner_.clear();
  present_ = false;
  changed_ = true;
  refresh_ = false;
  reconnect_delay_ = kFirstReconnectDelay;
}

bool Client::reconnect() {
  try {
    open_link();
    subscribe();
  } catch (const sdbus::Error&) {
    link_.reset();
    reconnect_delay_ = std::min(reconnect_delay_ * 2, kMaxReconnectDelay);
    return false;
  }
  refresh_ = !owner_.empty();
  return true;
}

void Client::refresh(Deadline deadline) {
  auto timeout = kMethodCallTimeout;
  if (deadline) {
    const auto left = std::chrono::ceil<std::chrono::microseconds>(*deadline - Clock::now());
    // 0 would mean "sd-bus's default", not "none left".
    timeout = std::clamp(left, std::chrono::microseconds(1000), kMethodCallTimeout);
  }
  try {
    link_->connection->setMethodCallTimeout(timeout);
    props_ = link_->dpsd->get_all();
    present_ = true;
    changed_ = true;
  } catch (const sdbus::Error& e) {
    if (means_not_running(e)) {
      present_ = false;  // gone again already: the next NameOwnerChanged says who is next
      changed_ = true;
    } else if (means_bus_lost(e)) {
      lose_link();
    } else if (means_timeout(e)) {
      refresh_ = true;  // ask again, while the deadline allows
    } else {
      throw call_failure(e, "cannot read dpsd's properties");
    }
  }
}

bool Client::wait(const Properties& initial, bool present, const Predicate& done,
                  Deadline deadline) {
  props_ = initial;
  present_ = present;
  changed_ = false;
  if (done(props_, present_)) return true;
  auto retry_at = Clock::now();
  for (;;) {
    bool progressed = false;
    if (!link_ && Clock::now() >= retry_at) {
      progressed = reconnect();
      if (!progressed) retry_at = Clock::now() + reconnect_delay_;
    }
    if (link_) {
      progressed = process() || progressed;
      if (!link_) retry_at = Clock::now() + reconnect_delay_;
    }
    if (link_ && refresh_ && !passed(deadline)) {
      refresh_ = false;
      refresh(deadline);
      progressed = true;  // the call may have queued signals: process them before waiting
    }
    if (changed_) {
      changed_ = false;
      if (done(props_, present_)) return true;
    }
    if (progressed) continue;  // more may be queued
    if (passed(deadline)) return false;
    if (!wait_for_io(deadline, retry_at) && link_) {
      lose_link();
      retry_at = Clock::now() + reconnect_delay_;
    }
  }
}

// Sleeps until the connection has something for us, sd-bus wants to run a timeout, the next
// reconnection attempt is due (no connection) or the deadline passes. False when poll() fails.
bool Client::wait_for_io(Deadline deadline, Clock::time_point retry_at) {
  int timeout_ms = -1;
  if (deadline) timeout_ms = poll_ms(*deadline);
  pollfd fd{-1, 0, 0};
  if (link_) {
    try {
      const auto data = link_->connection->getEventLoopPollData();
      fd = {data.fd, data.events, 0};
      const int bus_ms = data.getPollTimeout();
      if (bus_ms >= 0 && (timeout_ms < 0 || bus_ms < timeout_ms)) timeout_ms = bus_ms;
    } catch (const sdbus::Error&) {
      return false;  // the connection is closed
    }
  } else {
    const int retry_ms = poll_ms(retry_at);
    if (timeout_ms < 0 || retry_ms < timeout_ms) timeout_ms = retry_ms;
  }
  const int r = ::poll(&fd, link_ ? 1 : 0, timeout_ms);
  return r >= 0 || errno == EINTR;
}

}  // namespace dpsctl
