#include "io/transport/stream.hpp"

namespace dpsd::io::transport {
namespace {

constexpr const char* kClosedByServer = "connection closed by server";

std::string timed_out(const Close& close) {
  return "timed out after " + std::to_string(close.budget.count()) + " ms";
}

// How a stream's end reads once the channel is up (and inside "WebSocket: upgrade failed: …").
std::string stream_words(const Close& close) {
  switch (close.reason) {
    case CloseReason::PeerClosed:
      return kClosedByServer;
    case CloseReason::PeerClosedWithCode:
      return "WebSocket: closed by server: " + close.detail;
    case CloseReason::LocalClose:
      return "connection closed by client";
    case CloseReason::Reset:
      return "connection reset by server";
    case CloseReason::Lost:
      return "connection to server lost: " + close.detail;
    case CloseReason::TlsFailure:
      return "TLS: " + close.detail;
    case CloseReason::SetupFailed:
      return "relay: " + close.detail;
    default:
      return close.detail;  // a sentence of its own: the gate's, the frame decoder's
  }
}

std::string stage_words(const Close& close) {
  const bool timeout = close.reason == CloseReason::Timeout;
  switch (close.stage) {
    case Stage::Dns:
      return "dns: " + (close.where.empty() ? "" : close.where + ": ") + close.detail;
    case Stage::Connect:
      return "connect: " + close.where + ": " + (timeout ? timed_out(close) : close.detail);
    case Stage::Proxy:
      if (close.reason == CloseReason::Refused) return close.detail;  // the parser's sentence
      if (timeout) {
        return "proxy: " + close.where + ": CONNECT " + close.detail + " " + timed_out(close);
      }
      if (close.reason == CloseReason::PeerClosed && close.detail.empty()) {
        return "proxy: " + close.where + ": closed the connection during CONNECT";
      }
      return "proxy: " + close.where + ": " + close.detail;
    case Stage::Tls:
      if (timeout) return "TLS: handshake " + timed_out(close);
      if (close.reason == CloseReason::SetupFailed) return "TLS: " + close.detail;
      if (close.reason == CloseReason::VerifyFailed) {
        return "TLS: certificate verify failed (" + close.detail + ")";
      }
      // A socket error during the handshake is quoted in errno's words ("connection reset by
      // peer"); an orderly end without them is the server closing.
      return "TLS: handshake failed: " + (close.detail.empty() ? kClosedByServer : close.detail);
    case Stage::WebSocket:
      if (timeout) return "WebSocket: upgrade " + timed_out(close);
      if (close.reason == CloseReason::Refused || close.reason == CloseReason::ProtocolError) {
        return close.detail;  // the handshake parser's or the frame decoder's sentence
      }
      return "WebSocket: upgrade failed: " + stream_words(close);
    case Stage::RelaySocket:
      return "relay socket: " + close.detail;
    case Stage::Relay:
      break;
  }
  return stream_words(close);
}

}  // namespace

std::string describe(const Close& close) {
  std::string text = stage_words(close);
  // Auto: when WebSocket fails too, why the first port failed is half the story.
  if (!close.first_try.empty()) text += " (after port " + close.first_try + ")";
  return text;
}

}  // namespace dpsd::io::transport
