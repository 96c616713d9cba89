#pragma once
// Syntax and length rules for the strings DPS sends back. They end up in files other services
// read (iothub.env, state.json), in D-Bus properties and in the topic of the next request, so a
// reply that breaks them is malformed: the attempt fails transiently and nothing is stored.
// Each rule cites where the service documents it.
#include <cstddef>
#include <string_view>

#include "core/expected.hpp"

namespace dpsd::core {

// RFC 1035 section 2.3.4 / RFC 1123 section 2.1: a host name is at most 253 characters of dot-
// separated labels, each 1..63 letters, digits and hyphens, not starting or ending with '-'.
inline constexpr std::size_t kMaxHostName = 253;
inline constexpr std::size_t kMaxHostLabel = 63;
// IoT Hub identity registry: "deviceId: a case-sensitive string (up to 128 characters long) of
// ASCII 7-bit alphanumeric characters plus - : . + % _ # * ? ! ( ) , = @ ; $ '".
inline constexpr std::size_t kMaxDeviceId = 128;
// DPS does not document a length; the ids seen from the service are "<digit>.<16 hex>.<uuid>"
// (55 characters, shared/dps-protocol.md section 0). Four times that is room for a new format
// without letting a reply grow the next request's topic without bound.
inline constexpr std::size_t kMaxOperationId = 256;
// substatus is an enum in the DPS spec (models.tsp: initialAssignment, deviceDataMigrated,
// deviceDataReset, reprovisionedToInitialAssignment); a new value is accepted if it has the
// same shape (an identifier), not arbitrary text.
inline constexpr std::size_t kMaxSubstatus = 64;
// The $rid dpsd sends is a decimal counter; a reply's $rid longer than this cannot be ours.
inline constexpr std::size_t kMaxRid = 32;

// Each returns an error that says what is wrong ("label 2 is 64 characters, at most 63"),
// without repeating the value: the caller names the field, and the value may be huge.
Status validate_host_name(std::string_view name);
Status validate_device_id(std::string_view id);
Status validate_operation_id(std::string_view id);
Status validate_substatus(std::string_view substatus);
Status validate_rid(std::string_view rid);

}  // namespace dpsd::core
