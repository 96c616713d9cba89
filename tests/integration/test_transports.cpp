// The real dpsd binary over each transport against the DPS emulator: MQTT over WebSocket
// (the emulator's WebSocket listener stands in for port 443), through an HTTP CONNECT proxy
// (the test tree's, with Basic credentials), the https_proxy/no_proxy environment, and
// transport = "auto" falling back when the MQTT port is closed or silent, then remembering it.
// These need the daemon wiring of [provisioning] transport and [proxy] (app/attempt.cpp,
// app/daemon.cpp) to pass.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>

#include "dpsd_fixture.hpp"
#include "support/connect_proxy.hpp"
#include "support/net.hpp"

namespace dpsd::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kProxyPassword = "pr0xy-s3cret";

ConnectProxyOptions with_credentials() {
  ConnectProxyOptions o;
  o.user = "dev";
  o.password = kProxyPassword;
  return o;
}

class Transports : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EmulatorOptions options;
    options.websocket = true;
    emulator_ = std::make_unique<DpsEmulator>(options);
  }
  static void TearDownTestSuite() { emulator_.reset(); }

  DpsEmulator& emulator() { return *emulator_; }

  std::unique_ptr<Device> enroll() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string regid = std::string("tr-") + info->name();
    for (auto& c : regid) {
      c = std::isalnum(static_cast<unsigned char>(c))
              ? static_cast<char>(std::tolower(static_cast<unsigned char>(c)))
              : '-';
    }
    auto device = std::make_unique<Device>(emulator(), regid);
    emulator().set_device(regid, device->key(), {{"name", "immediate"}});
    return device;
  }

  // Device::run with extra environment variables (and the proxy ones cleared otherwise, so a
  // proxy in the CI environment cannot change what is tested).
  RunResult run_with_env(const Device& device, std::map<std::string, std::string> env,
                         std::vector<std::string> args = {"--once", "--force"}) {
    std::vector<std::string> argv{DPSD_BINARY, "--config", device.config_path().string()};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessOptions po;
    po.unset_env = {"https_proxy", "HTTPS_PROXY", "no_proxy",  "NO_PROXY",
                    "http_proxy",  "HTTP_PROXY",  "all_proxy", "ALL_PROXY"};
    po.env = std::move(env);
    const auto start = std::chrono::steady_clock::now();
    Process dpsd(argv, po);
    RunResult result;
    const auto code = dpsd.wait_for_exit(60s);
    result.took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    if (!code) dpsd.stop();
    result.exit_code = code.value_or(-1);
    result.out = dpsd.stdout_text();
    result.err = dpsd.stderr_text();
    return result;
  }

  static std::unique_ptr<DpsEmulator> emulator_;
};
std::unique_ptr<DpsEmulator> Transports::emulator_;

std::string ws_endpoint(const DpsEmulator& e) {
  return "localhost:" + std::to_string(e.ws_port());
}

TEST_F(Transports, MqttOverWebSocket) {
  auto device = enroll();
  device->write_config("", "individual", ws_endpoint(emulator()), {}, "transport = \"mqtt-ws\"\n");
  const RunResult r = run_with_env(*device, {});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(device->state().value("transport", ""), "mqtt-ws");
  EXPECT_GE(emulator().count_events("connect", device->regid()), 1u);
}

TEST_F(Transports, MqttThroughProxyWithCredentials) {
  ConnectProxy proxy(with_credentials());
  auto device = enroll();
  device->write_config("[proxy]\nurl = \"" + proxy.url(std::string("dev:") + kProxyPassword) +
                       "\"\n");
  // A password in the URL is accepted only in a config that only its owner can read.
  std::filesystem::permissions(device->config_path(), std::filesystem::perms::owner_read |
                                                          std::filesystem::perms::owner_write);
  const RunResult r = run_with_env(*device, {}, {"--once", "--force", "-v"});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_GE(proxy.tunnels(), 1);
  EXPECT_EQ(r.out.find(kProxyPassword), std::string::npos) << "proxy password in stdout";
  EXPECT_EQ(r.err.find(kProxyPassword), std::string::npos) << "proxy password in the log";
  EXPECT_EQ(device->state_text().find(kProxyPassword), std::string::npos);
}

TEST_F(Transports, WebSocketThroughProxy) {
  ConnectProxy proxy(with_credentials());
  auto device = enroll();
  // The credentials in a file of their own (0600), the URL without them.
  const auto credentials = device->config_path().parent_path() / "proxy-credentials";
  write_file(credentials, std::string("dev:") + kProxyPassword, 0600);
  device->write_config("[proxy]\nurl = \"" + proxy.url("") + "\"\ncredentials = \"file://" +
                           credentials.string() + "\"\n",
                       "individual", ws_endpoint(emulator()), {}, "transport = \"mqtt-ws\"\n");
  const RunResult r = run_with_env(*device, {});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_GE(proxy.tunnels(), 1);
  EXPECT_EQ(device->state().value("transport", ""), "mqtt-ws");
}

TEST_F(Transports, ProxyWithoutCredentialsIsReported) {
  ConnectProxy proxy(with_credentials());
  auto device = enroll();
  device->write_config("[proxy]\nurl = \"" + proxy.url() + "\"\n");
  const RunResult r = run_with_env(*device, {}, {"--once", "--force", "--timeout", "3"});
  EXPECT_EQ(r.exit_code, 3) << describe(r);
  EXPECT_NE((r.out + r.err).find("407 Proxy Authentication Required"), std::string::npos)
      << describe(r);
  EXPECT_FALSE(device->has_state());
}

TEST_F(Transports, HttpsProxyFromTheEnvironment) {
  ConnectProxy proxy;
  auto device = enroll();
  const RunResult r = run_with_env(*device, {{"https_proxy", proxy.url()}});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_GE(proxy.tunnels(), 1);

  // no_proxy names the DPS host: direct, the proxy sees nothing more.
  const int before = proxy.tunnels();
  const RunResult direct =
      run_with_env(*device, {{"HTTPS_PROXY", proxy.url()}, {"no_proxy", "example.com,localhost"}});
  ASSERT_EQ(direct.exit_code, 0) << describe(direct);
  EXPECT_EQ(proxy.tunnels(), before);
}

TEST_F(Transports, EmptyProxyUrlOverridesTheEnvironment) {
  ConnectProxy proxy;
  auto device = enroll();
  device->write_config("[proxy]\nurl = \"\"\n");
  const RunResult r = run_with_env(*device, {{"https_proxy", proxy.url()}});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(proxy.tunnels(), 0);
}

TEST_F(Transports, AutoFallsBackWhenMqttPortIsClosed) {
  auto device = enroll();
  const std::uint16_t closed = free_port();  // nothing listens there
  device->write_config(
      "", "individual", "localhost:" + std::to_string(closed), {},
      "transport = \"auto\"\nwebsocket_port = " + std::to_string(emulator().ws_port()) + "\n");
  const RunResult r = run_with_env(*device, {});
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(device->state().value("transport", ""), "mqtt-ws");
}

TEST_F(Transports, AutoRemembersWebSocketAfterASilentMqttPort) {
  // A listener with a full accept queue: further SYNs are dropped, as by a firewall.
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(listener, 0), 0);
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  std::vector<int> fillers;
  for (int i = 0; i < 2; ++i) {
    fillers.push_back(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    ::connect(fillers.back(), reinterpret_cast<const sockaddr*>(&address), sizeof address);
  }
  pollfd probe{fillers.back(), POLLOUT, 0};
  const bool hangs = ::poll(&probe, 1, 300) == 0;
  auto cleanup = [&] {
    for (int fd : fillers) ::close(fd);
    ::close(listener);
  };
  if (!hangs) {
    cleanup();
    GTEST_SKIP() << "this kernel completes connects beyond the backlog; cannot make one hang";
  }

  auto device = enroll();
  // 127.0.0.1, not localhost: the silent listener is IPv4 only and ::1 would refuse at once.
  device->write_config(
      "", "individual", "127.0.0.1:" + std::to_string(ntohs(address.sin_port)), {},
      "transport = \"auto\"\nwebsocket_port = " + std::to_string(emulator().ws_port()) + "\n");
  const RunResult first = run_with_env(*device, {});
  EXPECT_EQ(first.exit_code, 0) << describe(first);
  EXPECT_EQ(device->state().value("transport", ""), "mqtt-ws");
  EXPECT_GE(first.took, 2500ms) << "the first run should have waited for the silent port";

  // Next time it starts with what worked: no wait for the silent port.
  const RunResult second = run_with_env(*device, {});
  EXPECT_EQ(second.exit_code, 0) << describe(second);
  EXPECT_EQ(device->state().value("transport", ""), "mqtt-ws");
  EXPECT_LT(second.took, 2500ms) << describe(second);
  cleanup();
}

}  // namespace
}  // namespace dpsd::test
