// libFuzzer target: core::ws::FrameDecoder, which decodes the bytes a WebSocket server sends.
// The first input byte picks how the rest is cut into feed() calls; the result must be the same
// as feeding everything at once (a TLS read can end anywhere in a frame).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/websocket.hpp"

using dpsd::core::ws::FrameDecoder;

namespace {
bool same(const FrameDecoder::Events& a, const FrameDecoder::Events& b) {
  return a.data == b.data && a.pings == b.pings && a.close_received == b.close_received &&
         a.close_code == b.close_code && a.close_reason == b.close_reason;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t step = 1 + data[0] % 17;
  const char* bytes = reinterpret_cast<const char*>(data + 1);
  const std::size_t n = size - 1;
  constexpr std::size_t kMax = 4096;  // small, so the size limits are reached

  FrameDecoder whole(kMax);
  FrameDecoder::Events whole_events;
  const bool whole_ok = whole.feed(bytes, n, whole_events).ok();

  FrameDecoder pieces(kMax);
  FrameDecoder::Events piece_events;
  bool pieces_ok = true;
  for (std::size_t off = 0; off < n && pieces_ok; off += step) {
    const std::size_t len = off + step <= n ? step : n - off;
    auto status = pieces.feed(bytes + off, len, piece_events);
    if (!status.ok()) {
      if (status.error().empty()) std::abort();
      pieces_ok = false;
    }
  }
  // After a close frame the stream is over. Bytes behind it are ignored when they arrive in the
  // same feed() and are an error ("frame after close") in a later one; either way the caller
  // drops the connection, so only the events up to the close must agree.
  if (whole_events.close_received || piece_events.close_received) {
    if (!same(whole_events, piece_events)) std::abort();
    return 0;
  }
  if (whole_ok != pieces_ok) std::abort();
  if (whole_ok && !same(whole_events, piece_events)) std::abort();
  if (whole_ok && whole.idle() != pieces.idle()) std::abort();
  if (whole_events.data.size() > n) std::abort();
  return 0;
}
