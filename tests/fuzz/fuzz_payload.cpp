// libFuzzer target: core::validate_payload_json, which sees the contents of payload_file before
// they go into the register request. Checks what the daemon relies on: an accepted payload is a
// JSON object whose compact form validates again to itself (so it is sent exactly as checked), and
// nothing nests deep enough to exhaust the stack (ASan reports a stack overflow as a crash).
// 70-fuzz.sh runs it with -max_len above the 64 KiB file cap, so deep and long inputs are tried.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "core/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto result = dpsd::core::validate_payload_json(text);
  if (!result) {
    if (result.error().empty()) std::abort();
    return 0;
  }
  const auto again = dpsd::core::validate_payload_json(*result);
  if (!again || *again != *result) std::abort();
  if (!nlohmann::json::parse(*result).is_object()) std::abort();
  return 0;
}
