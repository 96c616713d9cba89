// transport::TlsStream over a real TCP stream against `openssl s_server -rev` (each line echoed
// reversed) with the test PKI: the handshake and its verdicts, bytes both ways, how the end of
// the stream reads. The full TLS policy is in test_tls_policy.cpp.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "io/tls_context.hpp"
#include "io/transport/tls_stream.hpp"
#include "stage_driver.hpp"
#include "support/net.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"

namespace dpsd::io::transport {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::Process;
using test::TempDir;
using test::TestPki;

std::unique_ptr<TempDir> pki_dir;
std::unique_ptr<TestPki> pki;

class TlsStreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_dir = std::make_unique<TempDir>("dpsd-tls-stream-pki");
    pki = std::make_unique<TestPki>(pki_dir->path());
  }
  static void TearDownTestSuite() {
    pki.reset();
    pki_dir.reset();
  }

  void SetUp() override {
    auto ctx = make_client_tls_context(pki->ca_path());
    ASSERT_TRUE(ctx.ok()) << ctx.error();
    ctx_ = std::move(ctx.value());
  }

  // s_server on a free port, accepting before this returns.
  void start_server(const fs::path& cert, const fs::path& key) {
    port_ = test::free_port();
    server_ = std::make_unique<Process>(std::vector<std::string>{
        "openssl", "s_server", "-rev", "-accept", "127.0.0.1:" + std::to_string(port_), "-cert",
        cert.string(), "-key", key.string()});
    ASSERT_TRUE(test::wait_for_tcp_port(port_, 10s))
        << "s_server did not listen within 10 s: " << server_->stderr_text();
  }

  // TLS over a fresh TCP connection to the server, handshake driven to its end.
  std::unique_ptr<TlsStream> handshake(const std::string& host, Progress expected) {
    auto tcp = test::tcp_to(port_);
    EXPECT_NE(tcp, nullptr) << "cannot connect to port " << port_;
    if (!tcp) return nullptr;
    auto tls = std::make_unique<TlsStream>(ctx_.get(), std::move(tcp), host);
    const Progress progress = test::drive(*tls, tls->fd());
    EXPECT_EQ(progress, expected) << (progress == Progress::Failed ? describe(tls->failure())
                                                                   : "no verdict within 10 s");
    return tls;
  }

  SslCtxPtr ctx_;
  std::uint16_t port_ = 0;
  std::unique_ptr<Process> server_;
};

TEST_F(TlsStreamTest, VerifiedHandshakeThenBytesBothWays) {
  start_server(pki->server_cert(), pki->server_key());
  auto tls = handshake("localhost", Progress::Done);
  ASSERT_FALSE(HasFailure());
  char byte = 0;
  EXPECT_EQ(tls->read(&byte, 1).status, IoResult::Status::WouldBlock);
  EXPECT_NE(tls->wanted_events(true, false), 0u) << "a blocked read must wait for something";
  EXPECT_EQ(tls->wanted_events(false, false), 0u) << "no work, no events (epoll must not spin)";
  ASSERT_TRUE(test::write_all(*tls, "hello, server\n"));
  EXPECT_EQ(test::read_some(*tls, 14), "revres ,olleh\n");
}

TEST_F(TlsStreamTest, ServerCloseReadsAsPeerClosed) {
  start_server(pki->server_cert(), pki->server_key());
  auto tls = handshake("127.0.0.1", Progress::Done);  // an IP literal, checked against IP SANs
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(test::write_all(*tls, "CLOSE\n"));  // s_server -rev hangs up on it
  bool closed = false;
  test::read_some(*tls, 1 << 20, &closed);
  ASSERT_TRUE(closed) << "the stream did not end after the server closed";
  EXPECT_EQ(tls->close_reason().reason, CloseReason::PeerClosed);
  EXPECT_EQ(describe(tls->close_reason()), "connection closed by server");
}

TEST_F(TlsStreamTest, HostNameMismatch) {
  start_server(pki->wrong_host_cert(), pki->wrong_host_key());
  auto tls = handshake("localhost", Progress::Failed);
  ASSERT_NE(tls, nullptr);
  EXPECT_EQ(tls->failure().reason, CloseReason::VerifyFailed);
  EXPECT_EQ(describe(tls->failure()), "TLS: certificate verify failed (hostname mismatch)");
}

TEST_F(TlsStreamTest, IpLiteralMismatch) {
  start_server(pki->wrong_host_cert(), pki->wrong_host_key());
  auto tls = handshake("127.0.0.1", Progress::Failed);
  ASSERT_NE(tls, nullptr);
  EXPECT_EQ(describe(tls->failure()), "TLS: certificate verify failed (IP address mismatch)");
}

TEST_F(TlsStreamTest, UnknownCa) {
  start_server(pki->other_server_cert(), pki->other_server_key());
  auto tls = handshake("localhost", Progress::Failed);
  ASSERT_NE(tls, nullptr);
  EXPECT_EQ(describe(tls->failure()),
            "TLS: certificate verify failed (unable to get local issuer certificate)");
}

TEST_F(TlsStreamTest, ServerThatHangsUpAtOnce) {
  UniqueFd listener = test::listen_on_loopback(&port_);
  auto tcp = test::tcp_to(port_);
  ASSERT_NE(tcp, nullptr);
  UniqueFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  accepted.reset();
  TlsStream tls(ctx_.get(), std::move(tcp), "localhost");
  ASSERT_EQ(test::drive(tls, tls.fd()), Progress::Failed);
  // OpenSSL 3 reports a TCP end without close_notify in its own words; during the handshake
  // they are quoted as they are (only a relayed stream reads it as an ordinary close).
  EXPECT_EQ(describe(tls.failure()), "TLS: handshake failed: unexpected eof while reading");
}

TEST_F(TlsStreamTest, ServerThatSpeaksAnotherProtocol) {
  UniqueFd listener = test::listen_on_loopback(&port_);
  auto tcp = test::tcp_to(port_);
  ASSERT_NE(tcp, nullptr);
  UniqueFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  const std::string http = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
  ::send(accepted.get(), http.data(), http.size(), MSG_NOSIGNAL);
  TlsStream tls(ctx_.get(), std::move(tcp), "localhost");
  ASSERT_EQ(test::drive(tls, tls.fd()), Progress::Failed);
  EXPECT_EQ(tls.failure().reason, CloseReason::TlsFailure);
  const std::string reason = describe(tls.failure());
  EXPECT_EQ(reason.rfind("TLS: handshake failed: ", 0), 0u) << reason;
  EXPECT_NE(reason, "TLS: handshake failed: connection closed by server") << reason;
}

}  // namespace
}  // namespace dpsd::io::transport
