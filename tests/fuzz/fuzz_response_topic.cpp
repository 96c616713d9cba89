// libFuzzer target: core::parse_response_topic, the parser of every topic DPS publishes to us.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/topics.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view topic(reinterpret_cast<const char*>(data), size);
  const auto parsed = dpsd::core::parse_response_topic(topic);
  if (parsed) {
    // Whatever it accepts is a response topic with a 3-digit status.
    if (!topic.starts_with(dpsd::core::kResponsePrefix)) std::abort();
    if (parsed->status < 0 || parsed->status > 999) std::abort();
    if (parsed->retry_after_s && *parsed->retry_after_s < 0) std::abort();
    if (parsed->retry_after_s && !parsed->retry_after_present) std::abort();
  }
  return 0;
}
