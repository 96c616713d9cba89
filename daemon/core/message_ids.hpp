#pragma once
// The journal MESSAGE_IDs of the events an operator searches for (`journalctl MESSAGE_ID=…`,
// `journalctl -x` with systemd/dpsd.catalog). Generated once with `systemd-id128 new`, as
// systemd's own daemons do; an id never changes meaning, and a new event gets a new id. The
// catalog entry for each id is in systemd/dpsd.catalog (keep both in step).
#include <string_view>

namespace dpsd::core {

struct MessageId {
  std::string_view hex;  // 32 lower-case hex digits
};

// A registration with DPS assigned this device (first time, or the same hub again).
inline constexpr MessageId kMessageProvisioned{"dc26f707ef6040a4a88d9524054aae69"};
// A registration moved the device to another IoT hub than the one in the state file.
inline constexpr MessageId kMessageReprovisionedToOtherHub{"5d8911e840154792a9c5a1f80eed8ae2"};
// The cached assignment (state.json) is served at start without asking DPS.
inline constexpr MessageId kMessageServedFromCache{"2e7c264682ce406cae541d0404355e86"};
// DPS refused the registration (401, 404, failed, disabled…).
inline constexpr MessageId kMessageRefused{"027f37186d194453886bf6a3c5da4e8e"};
// A local identity problem: key, certificate or PIN missing, unreadable or wrong.
inline constexpr MessageId kMessageIdentityProblem{"62ff5280c8734563952f2ada76512ffe"};
// The system clock is earlier than dpsd's build time; provisioning waits for it.
inline constexpr MessageId kMessageClockNotSet{"c17c3e2310334d57952eebb7f995292e"};
// The device certificate expires soon (or has expired).
inline constexpr MessageId kMessageCertificateExpiring{"1dd060036ab9420eb491ab11cb71633e"};

}  // namespace dpsd::core
