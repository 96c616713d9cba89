#include "support/tls_test_server.hpp"

#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>

namespace dpsd::test {

std::size_t TlsConnection::read(char* data, std::size_t n) {
  if (!buffered_.empty()) {
    const std::size_t taken = std::min(n, buffered_.size());
    buffered_.copy(data, taken);
    buffered_.erase(0, taken);
    return taken;
  }
  const int got = SSL_read(ssl_, data, static_cast<int>(n));
  return got > 0 ? static_cast<std::size_t>(got) : 0;
}

bool TlsConnection::write(std::string_view bytes) {
  return bytes.empty() || SSL_write(ssl_, bytes.data(), static_cast<int>(bytes.size())) ==
                              static_cast<int>(bytes.size());
}

std::string TlsConnection::read_until(std::string_view terminator) {
  std::string in = std::move(buffered_);
  buffered_.clear();
  char buffer[4096];
  for (std::size_t at; (at = in.find(terminator)) == std::string::npos;) {
    const int n = SSL_read(ssl_, buffer, sizeof buffer);
    if (n <= 0) return {};
    in.append(buffer, static_cast<std::size_t>(n));
  }
  const std::size_t end = in.find(terminator) + terminator.size();
  buffered_ = in.substr(end);
  in.resize(end);
  return in;
}

std::string TlsConnection::read_to_end() {
  std::string in = std::move(buffered_);
  buffered_.clear();
  char buffer[4096];
  for (int n; (n = SSL_read(ssl_, buffer, sizeof buffer)) > 0;) {
    in.append(buffer, static_cast<std::size_t>(n));
  }
  return in;
}

void TlsConnection::close_notify() {
  SSL_shutdown(ssl_);
}

void TlsTestServer::CtxDeleter::operator()(ssl_ctx_st* ctx) const {
  SSL_CTX_free(ctx);
}

TlsTestServer::TlsTestServer(const std::filesystem::path& cert, const std::filesystem::path& key,
                             Script script, std::chrono::seconds receive_timeout)
    : script_(std::move(script)), receive_timeout_(receive_timeout) {
  ctx_.reset(SSL_CTX_new(TLS_server_method()));
  if (!ctx_ || SSL_CTX_use_certificate_chain_file(ctx_.get(), cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx_.get(), key.c_str(), SSL_FILETYPE_PEM) != 1) {
    throw std::runtime_error("TlsTestServer: cannot load " + cert.string());
  }
  listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  if (listener_ < 0 ||
      ::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(listener_, 1) != 0 ||
      ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    if (listener_ >= 0) ::close(listener_);
    throw std::runtime_error("TlsTestServer: cannot listen on 127.0.0.1");
  }
  port_ = ntohs(address.sin_port);
  thread_ = std::thread([this] { serve(); });
}

TlsTestServer::~TlsTestServer() {
  ::shutdown(listener_, SHUT_RDWR);  // wakes a thread still in accept()
  join();
  ::close(listener_);
}

void TlsTestServer::join() {
  if (thread_.joinable()) thread_.join();
}

void TlsTestServer::serve() {
  const int conn = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
  if (conn < 0) return;
  timeval tv{static_cast<time_t>(receive_timeout_.count()), 0};
  ::setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  SSL* ssl = SSL_new(ctx_.get());
  SSL_set_fd(ssl, conn);
  if (SSL_accept(ssl) == 1) {
    TlsConnection connection(ssl);
    script_(connection);
  }
  SSL_free(ssl);
  ::close(conn);
}

std::string ws_request_key(const std::string& request_head) {
  const std::string name = "Sec-WebSocket-Key: ";
  const std::size_t at = request_head.find(name);
  if (at == std::string::npos) return {};
  const std::size_t begin = at + name.size();
  return request_head.substr(begin, request_head.find("\r\n", begin) - begin);
}

std::string ws_accept_for(const std::string& key) {
  const std::string text = key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  unsigned char out[64] = {};
  const int n = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
}

std::string ws_upgrade_answer(const std::string& key, const std::string& protocol) {
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: " +
         ws_accept_for(key) + "\r\nSec-WebSocket-Protocol: " + protocol + "\r\n\r\n";
}

bool ws_accept_upgrade(TlsConnection& connection) {
  const std::string request = connection.read_until("\r\n\r\n");
  if (request.empty()) return false;
  return connection.write(ws_upgrade_answer(ws_request_key(request)));
}

std::string ws_server_frame(std::uint8_t first_byte, std::string_view payload) {
  std::string out(1, static_cast<char>(first_byte));
  const std::size_t n = payload.size();
  if (n < 126) {
    out += static_cast<char>(n);
  } else if (n < 65536) {
    out += '\x7e';
    out += static_cast<char>(n >> 8);
    out += static_cast<char>(n & 0xff);
  } else {
    out += '\x7f';
    for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
  }
  out += payload;
  return out;
}

std::string ws_binary_frame(std::string_view payload) {
  return ws_server_frame(0x82, payload);
}

std::vector<WsFrame> ws_take_client_frames(std::string& raw) {
  std::vector<WsFrame> frames;
  for (;;) {
    if (raw.size() < 2) break;
    std::size_t length = static_cast<std::uint8_t>(raw[1]) & 0x7f;
    std::size_t header = 2;
    if (length == 126) {
      if (raw.size() < 4) break;
      length = (static_cast<std::size_t>(static_cast<std::uint8_t>(raw[2])) << 8) |
               static_cast<std::uint8_t>(raw[3]);
      header = 4;
    } else if (length == 127) {
      if (raw.size() < 10) break;
      length = 0;
      for (int i = 0; i < 8; ++i) length = (length << 8) | static_cast<std::uint8_t>(raw[2 + i]);
      header = 10;
    }
    if (raw.size() < header + 4 + length) break;
    const std::string mask = raw.substr(header, 4);
    WsFrame frame{static_cast<std::uint8_t>(raw[0]) & 0x0f, raw.substr(header + 4, length)};
    for (std::size_t i = 0; i < frame.payload.size(); ++i) {
      frame.payload[i] = static_cast<char>(frame.payload[i] ^ mask[i % 4]);
    }
    frames.push_back(std::move(frame));
    raw.erase(0, header + 4 + length);
  }
  return frames;
}

}  // namespace dpsd::test
