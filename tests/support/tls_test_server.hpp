#pragma once
// A TLS server for one connection on a free 127.0.0.1 port, served on its own thread (the code
// under test runs its event loop on the test's thread): it accepts, completes the handshake with
// the given certificate and key, and hands the connection to a script. For what real servers
// never do on demand: hostile MQTT, pings, close codes, bad frames and answers.
//
// With it, the server's half of WebSocket (RFC 6455), written here without core::ws so the
// tests do not check the codec against itself.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

struct ssl_st;
struct ssl_ctx_st;

namespace dpsd::test {

// The accepted connection, blocking, with a receive timeout so a script never hangs a suite.
class TlsConnection {
 public:
  explicit TlsConnection(ssl_st* ssl) : ssl_(ssl) {}
  // Up to n bytes; 0 at EOF, on an error or after the receive timeout.
  std::size_t read(char* data, std::size_t n);
  bool write(std::string_view bytes);  // all of them, as one SSL_write
  // Reads until `terminator` arrived and returns everything up to and including it; what came
  // after it stays for the next read. "" when the connection ended first.
  std::string read_until(std::string_view terminator);
  std::string read_to_end();  // until EOF or the receive timeout
  void close_notify();        // SSL_shutdown: the orderly end of TLS

 private:
  ssl_st* ssl_;
  std::string buffered_;  // read past a terminator
};

class TlsTestServer {
 public:
  using Script = std::function<void(TlsConnection& connection)>;

  TlsTestServer(const std::filesystem::path& cert, const std::filesystem::path& key, Script script,
                std::chrono::seconds receive_timeout = std::chrono::seconds(10));
  ~TlsTestServer();  // stops accepting and waits for the script
  TlsTestServer(const TlsTestServer&) = delete;
  TlsTestServer& operator=(const TlsTestServer&) = delete;

  std::uint16_t port() const { return port_; }
  void join();  // waits until the script returned (and the connection is closed)

 private:
  void serve();

  struct CtxDeleter {
    void operator()(ssl_ctx_st* ctx) const;
  };
  Script script_;
  std::chrono::seconds receive_timeout_;
  std::unique_ptr<ssl_ctx_st, CtxDeleter> ctx_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

// --- WebSocket, the server's side ----------------------------------------------------------

// The Sec-WebSocket-Key of an upgrade request head ("" when there is none).
std::string ws_request_key(const std::string& request_head);
// base64(SHA1(key + RFC 6455's GUID)).
std::string ws_accept_for(const std::string& key);
// "HTTP/1.1 101 Switching Protocols" with Upgrade, Connection, the accept value and protocol.
std::string ws_upgrade_answer(const std::string& key, const std::string& protocol = "mqtt");
// Reads the upgrade request and sends ws_upgrade_answer(); false when no request came.
bool ws_accept_upgrade(TlsConnection& connection);
// An unmasked frame, as a server sends it: first byte (FIN, opcode) and any payload length.
std::string ws_server_frame(std::uint8_t first_byte, std::string_view payload);
std::string ws_binary_frame(std::string_view payload);  // FIN + binary

struct WsFrame {
  int opcode = 0;
  std::string payload;  // unmasked
  bool operator==(const WsFrame&) const = default;
};
// Takes the complete client frames (masked) off the front of `raw`, unmasked; an incomplete
// frame stays in `raw`.
std::vector<WsFrame> ws_take_client_frames(std::string& raw);

}  // namespace dpsd::test
