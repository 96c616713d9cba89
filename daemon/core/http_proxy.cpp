#include "core/http_proxy.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>

#include "core/base64.hpp"
#include "core/http_head.hpp"

namespace dpsd::core::proxy {
namespace {

using http::lower;

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())) != 0)
    text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())) != 0)
    text.remove_suffix(1);
  return text;
}

std::optional<std::string> percent_decode(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    unsigned value = 0;
    const auto [ptr, ec] = std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16);
    if (ec != std::errc{} || ptr != text.data() + i + 3) return std::nullopt;
    out += static_cast<char>(value);
    i += 2;
  }
  return out;
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size() || value == 0 ||
      value > 65535) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

std::string host_port(std::string_view host, std::uint16_t port) {
  const bool ipv6 = host.find(':') != std::string_view::npos;
  std::string out = ipv6 ? "[" + std::string(host) + "]" : std::string(host);
  return out + ":" + std::to_string(port);
}

std::string strip_dot(std::string text) {
  if (!text.empty() && text.back() == '.') text.pop_back();
  return text;
}

}  // namespace

std::string ProxyUrl::display() const {
  std::string out = "http://";
  if (user) out += *user + ":***@";
  return out + host_port(host, port);
}

Expected<ProxyUrl> parse_proxy_url(std::string_view url) {
  std::string_view rest = trim(url);
  const std::size_t scheme_end = rest.find("://");
  if (scheme_end != std::string_view::npos) {
    if (lower(rest.substr(0, scheme_end)) != "http") {
      return Error{"proxy URL must start with http:// (TLS to the proxy is not supported)"};
    }
    rest.remove_prefix(scheme_end + 3);
  }
  // Everything after the authority: only "/" is meaningful for a CONNECT proxy.
  const std::size_t slash = rest.find('/');
  if (slash != std::string_view::npos) {
    if (rest.substr(slash) != "/") return Error{"proxy URL must not have a path"};
    rest = rest.substr(0, slash);
  }
  ProxyUrl proxy;
  // The last '@' separates userinfo: a password may itself contain an unencoded '@'.
  const std::size_t at = rest.rfind('@');
  if (at != std::string_view::npos) {
    const std::string_view userinfo = rest.substr(0, at);
    rest.remove_prefix(at + 1);
    const std::size_t colon = userinfo.find(':');
    auto user = percent_decode(userinfo.substr(0, colon));
    if (!user || user->empty()) return Error{"proxy URL has a malformed user name"};
    proxy.user = std::move(*user);
    if (colon != std::string_view::npos) {
      auto password = percent_decode(userinfo.substr(colon + 1));
      if (!password) return Error{"proxy URL has a malformed password"};
      proxy.password = std::move(*password);
    }
  }
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    const std::size_t close = rest.find(']');
    if (close == std::string_view::npos) return Error{"proxy URL has an unterminated [IPv6] host"};
    proxy.host = std::string(rest.substr(1, close - 1));
    const std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Error{"proxy URL has junk after the [IPv6] host"};
      port_text = after.substr(1);
      if (port_text.empty()) return Error{"proxy URL has an empty port"};
    }
  } else {
    const std::size_t colon = rest.find(':');
    proxy.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = rest.substr(colon + 1);
      if (port_text.empty()) return Error{"proxy URL has an empty port"};
    }
  }
  if (proxy.host.empty()) return Error{"proxy URL has no host"};
  for (char c : proxy.host) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) == 0 && c != '.' && c != '-' && c != '_' && c != ':') {
      return Error{"proxy URL has an invalid host"};
    }
  }
  if (!port_text.empty()) {
    auto port = parse_port(port_text);
    if (!port) return Error{"proxy URL has an invalid port"};
    proxy.port = *port;
  }
  return proxy;
}

std::string build_connect_request(const ProxyUrl& proxy, std::string_view target_host,
                                  std::uint16_t target_port) {
  const std::string target = host_port(target_host, target_port);
  std::string out = "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n";
  if (proxy.user) {
    out += "Proxy-Authorization: Basic " +
           base64_encode(*proxy.user + ":" + proxy.password.value_or("")) + "\r\n";
  }
  out += "\r\n";
  return out;
}

ConnectResponseParser::State ConnectResponseParser::feed(const char* data, std::size_t n) {
  if (decided(data, n)) return state_;
  switch (head_.feed(data, n)) {
    case http::ResponseHeadParser::State::NeedMore:
      return state_;
    case http::ResponseHeadParser::State::Failed:
      break;
    case http::ResponseHeadParser::State::Done:
      status_ = head_.head().status;
      if (status_ < 200 || status_ > 299) {
        return refuse("CONNECT refused: " + head_.head().status_text());
      }
      state_ = State::Done;
      return state_;
  }
  switch (head_.problem()) {
    // Fails at the first bytes that are not HTTP (a TLS server, SSH, a SOCKS proxy) instead of
    // waiting for a blank line that never comes.
    case http::HeadProblem::NotHttp:
      return refuse("not an HTTP proxy (response does not start with HTTP/)");
    case http::HeadProblem::TooLong:
    case http::HeadProblem::TooManyHeaders:
      return refuse("CONNECT response too long");
    default:
      return refuse("malformed CONNECT response: " + head_.problem_line());
  }
}

bool no_proxy_matches(std::string_view no_proxy, std::string_view host, std::uint16_t port) {
  const std::string target = strip_dot(lower(host));
  std::string_view rest = no_proxy;
  while (!rest.empty()) {
    const std::size_t sep = rest.find_first_of(", ");
    std::string_view entry = trim(rest.substr(0, sep));
    rest = sep == std::string_view::npos ? std::string_view{} : rest.substr(sep + 1);
    if (entry.empty()) continue;
    if (entry == "*") return true;

    std::string name;
    std::optional<std::uint16_t> entry_port;
    if (entry.front() == '[') {  // [::1] or [::1]:443
      const std::size_t close = entry.find(']');
      if (close == std::string_view::npos) continue;
      name = lower(entry.substr(1, close - 1));
      if (close + 1 < entry.size() && entry[close + 1] == ':') {
        entry_port = parse_port(entry.substr(close + 2));
        if (!entry_port) continue;
      }
    } else if (std::count(entry.begin(), entry.end(), ':') == 1) {  // host:port
      const std::size_t colon = entry.find(':');
      name = lower(entry.substr(0, colon));
      entry_port = parse_port(entry.substr(colon + 1));
      if (!entry_port) continue;
    } else {
      name = lower(entry);  // a name, an IPv4 literal, or a bare IPv6 literal
    }
    if (entry_port && *entry_port != port) continue;
    if (!name.empty() && name.front() == '.') name.erase(0, 1);
    name = strip_dot(std::move(name));
    if (name.empty()) continue;
    if (target == name) return true;
    // Domain suffix on a label boundary: "example.com" matches "a.example.com", never
    // "badexample.com".
    if (target.size() > name.size() &&
        target.compare(target.size() - name.size(), name.size(), name) == 0 &&
        target[target.size() - name.size() - 1] == '.') {
      return true;
    }
  }
  return false;
}

Expected<std::optional<ProxyUrl>> proxy_from_environment(const GetEnv& getenv_fn,
                                                         std::string_view host,
                                                         std::uint16_t port) {
  auto read = [&](const char* lower_name, const char* upper_name) -> std::string {
    const char* value = getenv_fn(lower_name);
    if (value == nullptr || *value == '\0') value = getenv_fn(upper_name);
    return value == nullptr ? std::string() : std::string(trim(value));
  };
  const std::string url = read("https_proxy", "HTTPS_PROXY");
  if (url.empty()) return std::optional<ProxyUrl>{};
  if (no_proxy_matches(read("no_proxy", "NO_PROXY"), host, port)) {
    return std::optional<ProxyUrl>{};
  }
  auto proxy = parse_proxy_url(url);
  if (!proxy) return Error{"https_proxy: " + proxy.error()};
  return std::optional<ProxyUrl>(std::move(*proxy));
}

}  // namespace dpsd::core::proxy
