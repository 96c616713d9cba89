#include "dpsd_proxy.hpp"

#include <utility>

namespace dpsctl {
namespace {

constexpr const char* kDriverName = "org.freedesktop.DBus";
constexpr const char* kDriverPath = "/org/freedesktop/DBus";

}  // namespace

std::string as_string(const Properties& p, const std::string& name) {
  const auto it = p.find(name);
  if (it == p.end()) return {};
  if (const auto* s = std::get_if<std::string>(&it->second)) return *s;
  return {};
}

std::uint64_t as_u64(const Properties& p, const std::string& name) {
  const auto it = p.find(name);
  if (it == p.end()) return 0;
  if (const auto* t = std::get_if<std::uint64_t>(&it->second)) return *t;
  if (const auto* u = std::get_if<std::uint32_t>(&it->second)) return *u;
  return 0;
}

Properties to_properties(const std::map<std::string, sdbus::Variant>& dict) {
  Properties out;
  for (const auto& [name, variant] : dict) {
    const std::string type = variant.peekValueType();
    if (type == "s") {
      out[name] = variant.get<std::string>();
    } else if (type == "u") {
      out[name] = variant.get<std::uint32_t>();
    } else if (type == "t") {
      out[name] = variant.get<std::uint64_t>();
    } else if (type == "x") {
      out[name] = variant.get<std::int64_t>();
    } else if (type == "b") {
      out[name] = variant.get<bool>();
    }
  }
  return out;
}

DpsdProxy::DpsdProxy(sdbus::IConnection& connection)
    : ProxyInterfaces(connection, kBusName, kObjectPath) {}

DpsdProxy::~DpsdProxy() {
  unregisterProxy();
}

Properties DpsdProxy::get_all() {
  return to_properties(GetAll(Provisioning1_proxy::INTERFACE_NAME));
}

void DpsdProxy::watch(OnChanged on_changed) {
  on_changed_ = std::move(on_changed);
  registerProxy();
}

void DpsdProxy::onPropertiesChanged(const std::string& interface_name,
                                    const std::map<std::string, sdbus::Variant>& changed,
                                    const std::vector<std::string>& /*invalidated*/) {
  // dpsd sends values, never invalidations (every property emits its new value).
  if (interface_name != Provisioning1_proxy::INTERFACE_NAME || !on_changed_) return;
  const sdbus::Message* message = getProxy().getCurrentlyProcessedMessage();
  if (message == nullptr) return;
  on_changed_(message->getSender(), to_properties(changed));
}

NameOwnerWatch::NameOwnerWatch(sdbus::IConnection& connection, std::string name,
                               std::function<void(const std::string& owner)> on_owner)
    : name_(std::move(name)),
      on_owner_(std::move(on_owner)),
      driver_(sdbus::createProxy(connection, kDriverName, kDriverPath)) {
  // A raw match rather than a signal handler on driver_: arg0 makes the bus send us this name's
  // changes only, not every client's coming and going on the system bus.
  const std::string rule = std::string("type='signal',sender='") + kDriverName + "',path='" +
                           kDriverPath + "',interface='" + kDriverName +
                           "',member='NameOwnerChanged',arg0='" + name_ + "'";
  match_ = connection.addMatch(rule, [this](sdbus::Message& message) {
    // Runs inside sd-bus's dispatch, which sdbus-c++ does not guard for a match: nothing may
    // escape. Only the bus driver speaks for name ownership.
    try {
      if (message.getSender() != kDriverName) return;
      std::string changed_name;
      std::string old_owner;
      std::string new_owner;
      message >> changed_name >> old_owner >> new_owner;
      if (changed_name == name_) on_owner_(new_owner);
    } catch (const std::exception&) {  // a malformed signal: not ours to act on
    }
  });
}

std::string NameOwnerWatch::current_owner() {
  try {
    std::string owner;
    driver_->callMethod("GetNameOwner")
        .onInterface(kDriverName)
        .withArguments(name_)
        .storeResultsTo(owner);
    return owner;
  } catch (const sdbus::Error& e) {
    if (e.getName() == "org.freedesktop.DBus.Error.NameHasNoOwner") return {};
    throw;
  }
}

}  // namespace dpsctl
