// libFuzzer target: the DPS reply bodies, core::parse_operation_status (200/202) and
// core::parse_service_error (4xx/5xx). Both see bytes straight from the network.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/dps_messages.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const auto status = dpsd::core::parse_operation_status(body);
  if (status) {
    if (status->state == dpsd::core::OperationState::Assigned) {
      // Documented: an assignment always carries a hub and a device id.
      if (!status->registration_state || status->registration_state->assigned_hub.empty() ||
          status->registration_state->device_id.empty())
        std::abort();
    }
  } else if (status.error().empty()) {
    std::abort();  // every error names its cause
  }
  const auto error = dpsd::core::parse_service_error(body);
  (void)error;
  return 0;
}
