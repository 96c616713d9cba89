#pragma once
// HTTP CONNECT proxies (RFC 9110 9.3.6), pure: the proxy URL, the CONNECT request, the parser
// of the proxy's answer, and the environment rules (https_proxy, no_proxy) curl and most tools
// follow. The secure channel does the I/O. Credentials are kept out of every string meant for
// people: display() and the errors redact them as "user:***@".
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/expected.hpp"
#include "core/http_head.hpp"

namespace dpsd::core::proxy {

struct ProxyUrl {
  std::string host;  // name or IP literal (IPv6 without brackets)
  std::uint16_t port = 1080;
  std::optional<std::string> user;  // percent-decoded
  std::optional<std::string> password;

  // "http://user:***@host:port" or "http://host:port": for logs and D-Bus.
  std::string display() const;
  bool operator==(const ProxyUrl&) const = default;
};

// "http://[user[:pass]@]host[:port][/]" ("[::1]" for IPv6). Without a port, 1080 like curl.
// Only "http" (or no scheme): TLS to the proxy itself is not supported. Userinfo is
// percent-decoded. Errors never echo the credentials.
Expected<ProxyUrl> parse_proxy_url(std::string_view url);

// "CONNECT host:port HTTP/1.1\r\nHost: host:port\r\n[Proxy-Authorization: Basic …\r\n]\r\n".
std::string build_connect_request(const ProxyUrl& proxy, std::string_view target_host,
                                  std::uint16_t target_port);

// Incremental parser of the proxy's answer (its head through core/http_head.hpp). After the
// blank line the tunnel carries the target's bytes: they are kept in leftover() (for TLS there
// are none, the client speaks first).
// error(): "proxy: 127.0.0.1:3128: CONNECT refused: 407 Proxy Authentication Required"
class ConnectResponseParser : public http::HeadAnswer {
 public:
  static constexpr std::size_t kMaxHeaderBytes = std::size_t{16} * 1024;

  // proxy_name is "host:port" of the proxy, used in errors.
  explicit ConnectResponseParser(std::string proxy_name)
      : HeadAnswer({.max_bytes = kMaxHeaderBytes}), proxy_name_(std::move(proxy_name)) {}
  State feed(const char* data, std::size_t n);
  int status() const { return status_; }

 private:
  State refuse(const std::string& message) {
    return fail("proxy: " + proxy_name_ + ": " + message);
  }

  std::string proxy_name_;
  int status_ = 0;
};

// no_proxy: comma- (or space-) separated entries; "*" matches every host; "example.com" and
// ".example.com" match that domain and its subdomains; "host:port" only that port; IP literals
// match exactly. Case-insensitive, a trailing dot ignored.
bool no_proxy_matches(std::string_view no_proxy, std::string_view host, std::uint16_t port);

// The proxy for a connection to host:port when the config names none: https_proxy, then
// HTTPS_PROXY (the traffic is TLS), unless no_proxy/NO_PROXY exempts the host. getenv is
// passed in so the rules stay pure and testable. An empty variable means "none".
using GetEnv = std::function<const char*(const char*)>;
Expected<std::optional<ProxyUrl>> proxy_from_environment(const GetEnv& getenv_fn,
                                                         std::string_view host, std::uint16_t port);

}  // namespace dpsd::core::proxy
