#pragma once
// dpsd's object as sdbus-c++ sees it: the proxy that sdbus-c++-xml2cpp generates from
// dbus/io.dpsd.Provisioning1.xml at build time (provisioning1_proxy.h, in the build tree) with
// org.freedesktop.DBus.Properties beside it, and a watch on the bus driver for dpsd's name.
#include <sdbus-c++/sdbus-c++.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>

#include "provisioning1_proxy.h"

namespace dpsctl {

inline constexpr const char* kBusName = "io.dpsd.Provisioning1";
inline constexpr const char* kObjectPath = "/io/dpsd/Provisioning1";

// A property's value, in the D-Bus types dpsd uses (s, u, t, b, x).
using Value = std::variant<std::string, std::uint32_t, std::uint64_t, bool, std::int64_t>;
using Properties = std::map<std::string, Value>;

std::string as_string(const Properties& p, const std::string& name);
std::uint64_t as_u64(const Properties& p, const std::string& name);

// a{sv} as dpsctl keeps it; values of other types are left out.
Properties to_properties(const std::map<std::string, sdbus::Variant>& dict);

// io.dpsd.Provisioning1 at /io/dpsd/Provisioning1: the generated methods (Reprovision,
// GetConnectionInfo, one accessor per property) and GetAll / PropertiesChanged. Uses the
// caller's connection and never runs a thread of its own: the caller drives the connection.
class DpsdProxy final
    : public sdbus::ProxyInterfaces<io::dpsd::Provisioning1_proxy, sdbus::Properties_proxy> {
 public:
  // Each PropertiesChanged of dpsd's interface, with the unique name of the connection that
  // sent it, so the caller can drop what did not come from the owner of the name.
  using OnChanged = std::function<void(const std::string& sender, const Properties& changed)>;

  explicit DpsdProxy(sdbus::IConnection& connection);
  ~DpsdProxy();
  DpsdProxy(const DpsdProxy&) = delete;
  DpsdProxy& operator=(const DpsdProxy&) = delete;

  Properties get_all();
  // Adds the match for PropertiesChanged on the bus; `on_changed` runs as the caller processes
  // the connection. It must not throw (it runs inside sd-bus's dispatch).
  void watch(OnChanged on_changed);

 private:
  void onPropertiesChanged(const std::string& interface_name,
                           const std::map<std::string, sdbus::Variant>& changed,
                           const std::vector<std::string>& invalidated) override;

  OnChanged on_changed_;
};

// NameOwnerChanged of one name, from the bus driver only, and GetNameOwner.
class NameOwnerWatch {
 public:
  // `on_owner` gets the new owner's unique name, "" when the name was released. It must not
  // throw. Subscribes before it returns.
  NameOwnerWatch(sdbus::IConnection& connection, std::string name,
                 std::function<void(const std::string& owner)> on_owner);
  // The name's owner now; "" when nobody owns it.
  std::string current_owner();

 private:
  std::string name_;
  std::function<void(const std::string&)> on_owner_;
  std::unique_ptr<sdbus::IProxy> driver_;
  sdbus::Slot match_;
};

}  // namespace dpsctl
