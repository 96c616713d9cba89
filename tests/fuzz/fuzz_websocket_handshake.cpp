// libFuzzer target: core::ws::UpgradeResponseParser, the check of the server's HTTP answer to
// the WebSocket upgrade. The first input byte picks how the rest is cut into feed() calls; the
// verdict must be the same as feeding everything at once, and what it hands back as leftover
// must be the tail of the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/websocket.hpp"

using dpsd::core::ws::UpgradeResponseParser;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The key of RFC 6455's example, so the seed's Sec-WebSocket-Accept matches.
  static const std::string kKey = "dGhlIHNhbXBsZSBub25jZQ==";
  const std::size_t step = 1 + data[0] % 31;
  const char* bytes = reinterpret_cast<const char*>(data + 1);
  const std::size_t n = size - 1;

  UpgradeResponseParser whole(kKey, "mqtt");
  const auto whole_state = whole.feed(bytes, n);

  UpgradeResponseParser pieces(kKey, "mqtt");
  auto state = UpgradeResponseParser::State::NeedMore;
  std::size_t fed = 0;
  while (fed < n && state == UpgradeResponseParser::State::NeedMore) {
    const std::size_t len = fed + step <= n ? step : n - fed;
    state = pieces.feed(bytes + fed, len);
    fed += len;
  }
  if (state != whole_state) std::abort();
  if (state == UpgradeResponseParser::State::Failed && pieces.error().empty()) std::abort();
  if (whole_state == UpgradeResponseParser::State::Done) {
    const std::string_view input(bytes, n);
    if (!input.ends_with(whole.leftover())) std::abort();
    if (!std::string_view(bytes, fed).ends_with(pieces.leftover())) std::abort();
  }
  return 0;
}
