// libFuzzer target: core::parse_state, the reader of state.json (a file another process or a
// broken disk may have changed). Whatever it accepts must survive a serialise/parse round trip.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/state_record.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto parsed = dpsd::core::parse_state(text);
  if (!parsed) {
    if (parsed.error().empty()) std::abort();
    return 0;
  }
  if (parsed->assigned_hub.empty() || parsed->device_id.empty()) std::abort();
  const auto again = dpsd::core::parse_state(dpsd::core::serialize_state(*parsed));
  if (!again || !(*again == *parsed)) std::abort();
  // A hostile value never adds a line to iothub.env: every line is NAME=value or a comment.
  const std::string env = dpsd::core::render_env_file(*parsed);
  std::size_t start = 0;
  while (start < env.size()) {
    std::size_t end = env.find('\n', start);
    if (end == std::string::npos) std::abort();  // every line ends with a newline
    if (env[start] == '#') {                     // a comment line
      start = end + 1;
      continue;
    }
    std::size_t i = start;
    while (i < end && ((env[i] >= 'A' && env[i] <= 'Z') || env[i] == '_')) ++i;
    if (i == start || i >= end || env[i] != '=') std::abort();
    start = end + 1;
  }
  return 0;
}
