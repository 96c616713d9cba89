// HTTP CONNECT proxy rules: URL parsing, the request, the proxy's answer, no_proxy, environment.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>

#include "core/http_proxy.hpp"

namespace dpsd::core::proxy {
namespace {

TEST(ProxyUrl, ParsesHostPortAndCredentials) {
  auto p = parse_proxy_url("http://alice:s%40cret@proxy.example:3128/");
  ASSERT_TRUE(p) << p.error();
  EXPECT_EQ(p->host, "proxy.example");
  EXPECT_EQ(p->port, 3128);
  EXPECT_EQ(p->user, "alice");
  EXPECT_EQ(p->password, "s@cret");
  EXPECT_EQ(p->display(), "http://alice:***@proxy.example:3128");
}

TEST(ProxyUrl, DefaultsAndForms) {
  auto bare = parse_proxy_url("proxy.example");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->port, 1080);
  EXPECT_FALSE(bare->user);
  auto v6 = parse_proxy_url("http://[::1]:8080");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->display(), "http://[::1]:8080");
  auto at_in_password = parse_proxy_url("http://u:p@ss@h:1");
  ASSERT_TRUE(at_in_password);
  EXPECT_EQ(at_in_password->password, "p@ss");
  EXPECT_EQ(at_in_password->host, "h");
}

TEST(ProxyUrl, RejectsBadInputWithoutEchoingSecrets) {
  for (const char* url :
       {"https://h:1", "socks5://h:1", "http://:1", "http://h:0", "http://h:65536", "http://h:x",
        "http://h:", "http://h/path", "http://[::1", "http://h h:1", "http://u:secretpw@h:99999",
        "http://u:secretpw%zz@h:1"}) {
    auto p = parse_proxy_url(url);
    EXPECT_FALSE(p) << url;
    if (!p) {
      EXPECT_EQ(p.error().find("secretpw"), std::string::npos) << p.error();
    }
  }
}

TEST(ConnectRequest, WithAndWithoutAuthorization) {
  auto p = parse_proxy_url("http://user:pass@127.0.0.1:3128");
  ASSERT_TRUE(p);
  EXPECT_EQ(build_connect_request(*p, "dps.example", 443),
            "CONNECT dps.example:443 HTTP/1.1\r\nHost: dps.example:443\r\n"
            "Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\r\n");
  auto anonymous = parse_proxy_url("http://127.0.0.1:3128");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(build_connect_request(*anonymous, "::1", 8883),
            "CONNECT [::1]:8883 HTTP/1.1\r\nHost: [::1]:8883\r\n\r\n");
}

TEST(ConnectResponse, EstablishedByteByByte) {
  ConnectResponseParser parser("127.0.0.1:3128");
  const std::string text = "HTTP/1.1 200 Connection established\r\nProxy-agent: x\r\n\r\n";
  for (std::size_t i = 0; i + 1 < text.size(); ++i) {
    ASSERT_EQ(parser.feed(&text[i], 1), ConnectResponseParser::State::NeedMore) << i;
  }
  EXPECT_EQ(parser.feed(&text.back(), 1), ConnectResponseParser::State::Done);
  EXPECT_EQ(parser.status(), 200);
  EXPECT_TRUE(parser.leftover().empty());
}

TEST(ConnectResponse, ProxyAuthenticationRequired) {
  ConnectResponseParser parser("127.0.0.1:3128");
  const std::string text =
      "HTTP/1.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"x\"\r\n\r\n";
  EXPECT_EQ(parser.feed(text.data(), text.size()), ConnectResponseParser::State::Failed);
  EXPECT_EQ(parser.error(),
            "proxy: 127.0.0.1:3128: CONNECT refused: 407 Proxy Authentication Required");
  EXPECT_EQ(parser.status(), 407);
}

TEST(ConnectResponse, GarbageStatusLines) {
  for (const char* text :
       {"SSH-2.0-OpenSSH_9.2\r\n", "\x16\x03\x01\x02\x05hello", "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n", "HTTP/2 200\r\n\r\n", "HTTP/1.1\r\n\r\n"}) {
    ConnectResponseParser parser("p:1");
    EXPECT_EQ(parser.feed(text, std::strlen(text)), ConnectResponseParser::State::Failed) << text;
    EXPECT_EQ(parser.error().rfind("proxy: p:1: ", 0), 0u);
  }
  ConnectResponseParser endless("p:1");
  std::string text =
      "HTTP/1.1 200 OK\r\n" + std::string(ConnectResponseParser::kMaxHeaderBytes, 'h');
  EXPECT_EQ(endless.feed(text.data(), text.size()), ConnectResponseParser::State::Failed);
}

TEST(NoProxy, MatchingRules) {
  EXPECT_TRUE(no_proxy_matches("*", "anything", 1));
  EXPECT_TRUE(no_proxy_matches("example.com", "example.com", 443));
  EXPECT_TRUE(no_proxy_matches("example.com", "dps.EXAMPLE.com.", 443));
  EXPECT_TRUE(no_proxy_matches(".example.com", "dps.example.com", 443));
  EXPECT_TRUE(no_proxy_matches(".example.com", "example.com", 443));
  EXPECT_FALSE(no_proxy_matches("example.com", "badexample.com", 443));
  EXPECT_TRUE(no_proxy_matches("localhost, 10.0.0.1 ,example.com:8883", "example.com", 8883));
  EXPECT_FALSE(no_proxy_matches("example.com:8883", "example.com", 443));
  EXPECT_TRUE(no_proxy_matches("10.0.0.1", "10.0.0.1", 8883));
  EXPECT_FALSE(no_proxy_matches("10.0.0.1", "10.0.0.10", 8883));
  EXPECT_TRUE(no_proxy_matches("::1", "::1", 443));
  EXPECT_TRUE(no_proxy_matches("[::1]:443", "::1", 443));
  EXPECT_FALSE(no_proxy_matches("", "example.com", 443));
  EXPECT_FALSE(no_proxy_matches(",, ,", "example.com", 443));
  EXPECT_FALSE(no_proxy_matches("example.com:bad", "example.com", 443));
}

TEST(ProxyEnvironment, SelectionOrderAndExemptions) {
  std::map<std::string, std::string> env;
  auto getenv_fn = [&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  auto none = proxy_from_environment(getenv_fn, "dps.example", 443);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);

  env["HTTPS_PROXY"] = "http://upper:3128";
  auto upper = proxy_from_environment(getenv_fn, "dps.example", 443);
  ASSERT_TRUE(upper && *upper);
  EXPECT_EQ((*upper)->host, "upper");

  env["https_proxy"] = "http://lower:3128";
  auto lower_first = proxy_from_environment(getenv_fn, "dps.example", 443);
  ASSERT_TRUE(lower_first && *lower_first);
  EXPECT_EQ((*lower_first)->host, "lower");

  env["NO_PROXY"] = "example";
  auto exempt = proxy_from_environment(getenv_fn, "dps.example", 443);
  ASSERT_TRUE(exempt);
  EXPECT_FALSE(*exempt);

  env.erase("NO_PROXY");
  env["https_proxy"] = "ftp://user:hunter2@x";
  auto bad = proxy_from_environment(getenv_fn, "dps.example", 443);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().find("hunter2"), std::string::npos);
  EXPECT_EQ(bad.error().rfind("https_proxy: ", 0), 0u);
}

}  // namespace
}  // namespace dpsd::core::proxy
