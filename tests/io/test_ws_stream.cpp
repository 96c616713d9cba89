// transport::WsStream over TLS over TCP against a scripted TLS WebSocket server
// (tests/support/tls_test_server): the upgrade and its verdicts, frames both ways, pings, the
// server's close, the write bound, and the frames that come with the upgrade.
#include <gtest/gtest.h>
#include <sys/epoll.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "io/event_loop.hpp"
#include "io/tls_context.hpp"
#include "io/transport/relay.hpp"
#include "io/transport/tls_stream.hpp"
#include "io/transport/ws_stream.hpp"
#include "stage_driver.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"
#include "support/tls_test_server.hpp"

namespace dpsd::io::transport {
namespace {

using namespace std::chrono_literals;
using test::TempDir;
using test::TestPki;
using test::TlsConnection;
using test::TlsTestServer;
using test::WsFrame;

std::unique_ptr<TempDir> pki_dir;
std::unique_ptr<TestPki> pki;

// Reads client frames until one matches `last` (or the connection ends); all of them.
std::vector<WsFrame> frames_until(TlsConnection& connection,
                                  const std::function<bool(const WsFrame&)>& last) {
  std::vector<WsFrame> frames;
  std::string raw;
  char buffer[4096];
  for (;;) {
    for (WsFrame& frame : test::ws_take_client_frames(raw)) {
      frames.push_back(std::move(frame));
      if (last(frames.back())) return frames;
    }
    const std::size_t n = connection.read(buffer, sizeof buffer);
    if (n == 0) return frames;
    raw.append(buffer, n);
  }
}

bool is_close(const WsFrame& frame) {
  return frame.opcode == 0x8;
}

class WsStreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_dir = std::make_unique<TempDir>("dpsd-ws-stream-pki");
    pki = std::make_unique<TestPki>(pki_dir->path());
  }
  static void TearDownTestSuite() {
    pki.reset();
    pki_dir.reset();
  }

  void serve(TlsTestServer::Script script) {
    server_ = std::make_unique<TlsTestServer>(pki->server_cert(), pki->server_key(),
                                              std::move(script), 5s);
  }

  // TLS, then the upgrade, each driven to its end; the upgrade's verdict must be `expected`.
  std::unique_ptr<WsStream> upgrade(Progress expected) {
    auto ctx = make_client_tls_context(pki->ca_path());
    EXPECT_TRUE(ctx.ok()) << ctx.error();
    if (!ctx) return nullptr;
    ctx_ = std::move(ctx.value());
    auto tcp = test::tcp_to(server_->port());
    EXPECT_NE(tcp, nullptr);
    if (!tcp) return nullptr;
    auto tls = std::make_unique<TlsStream>(ctx_.get(), std::move(tcp), "localhost");
    EXPECT_EQ(test::drive(*tls, tls->fd()), Progress::Done) << describe(tls->failure());
    auto ws = std::make_unique<WsStream>(std::move(tls), WsStream::Options{.host = "localhost"});
    const Progress progress = test::drive(*ws, ws->fd());
    EXPECT_EQ(progress, expected) << (progress == Progress::Failed ? describe(ws->failure())
                                                                   : "no verdict within 10 s");
    return ws;
  }

  SslCtxPtr ctx_;
  std::unique_ptr<TlsTestServer> server_;
};

TEST_F(WsStreamTest, FramesBothWaysAndAGoodbye) {
  std::vector<WsFrame> received;
  serve([&](TlsConnection& connection) {
    if (!test::ws_accept_upgrade(connection)) return;
    received = frames_until(connection, [](const WsFrame& f) { return f.payload == "abc"; });
    // One message in three fragments: the stream hands on the bytes, not the boundaries.
    connection.write(test::ws_server_frame(0x02, "x") + test::ws_server_frame(0x00, "y") +
                     test::ws_server_frame(0x80, "z"));
    for (WsFrame& frame : frames_until(connection, is_close)) received.push_back(frame);
  });
  auto ws = upgrade(Progress::Done);
  ASSERT_NE(ws, nullptr);
  ASSERT_TRUE(test::write_all(*ws, "abc"));
  EXPECT_EQ(test::read_some(*ws, 3), "xyz");
  ws->shutdown();
  server_->join();
  EXPECT_EQ(received, (std::vector<WsFrame>{{0x2, "abc"}, {0x8, std::string("\x03\xe8", 2)}}));
}

TEST_F(WsStreamTest, PingThatCameWithTheUpgradeIsAnsweredFirst) {
  std::vector<WsFrame> received;
  serve([&](TlsConnection& connection) {
    const std::string request = connection.read_until("\r\n\r\n");
    connection.write(test::ws_upgrade_answer(test::ws_request_key(request)) +
                     test::ws_server_frame(0x89, "hi"));
    received = frames_until(connection, is_close);
  });
  auto ws = upgrade(Progress::Done);
  ASSERT_NE(ws, nullptr);
  ASSERT_TRUE(test::write_all(*ws, "after"));
  ws->shutdown();
  server_->join();
  ASSERT_GE(received.size(), 2u);
  EXPECT_EQ(received[0], (WsFrame{0xA, "hi"}));
  EXPECT_EQ(received[1], (WsFrame{0x2, "after"}));
}

TEST_F(WsStreamTest, ServerCloseWithAStatusIsEchoedAndReported) {
  std::vector<WsFrame> received;
  serve([&](TlsConnection& connection) {
    if (!test::ws_accept_upgrade(connection)) return;
    connection.write(test::ws_server_frame(0x88, std::string("\x03\xe9going away", 12)));
    received = frames_until(connection, is_close);
  });
  auto ws = upgrade(Progress::Done);
  ASSERT_NE(ws, nullptr);
  bool closed = false;
  EXPECT_EQ(test::read_some(*ws, 1, &closed), "");
  ASSERT_TRUE(closed) << "the server's close frame did not end the stream";
  EXPECT_EQ(ws->close_reason().reason, CloseReason::PeerClosedWithCode);
  EXPECT_EQ(describe(ws->close_reason()), "WebSocket: closed by server: 1001 going away");
  EXPECT_EQ(ws->write("late", 4).status, IoResult::Status::WouldBlock)
      << "nothing may follow the server's close but our echo";
  EXPECT_EQ(ws->wanted_events(true, true), 0u) << "a closed stream must not keep epoll busy";
  server_->join();
  EXPECT_EQ(received, (std::vector<WsFrame>{{0x8, std::string("\x03\xe9", 2)}}));
}

TEST_F(WsStreamTest, NormalCloseIsAnOrdinaryEnd) {
  serve([&](TlsConnection& connection) {
    if (!test::ws_accept_upgrade(connection)) return;
    connection.write(test::ws_server_frame(0x88, std::string("\x03\xe8", 2)));
    frames_until(connection, is_close);
  });
  auto ws = upgrade(Progress::Done);
  ASSERT_NE(ws, nullptr);
  bool closed = false;
  test::read_some(*ws, 1, &closed);
  ASSERT_TRUE(closed);
  EXPECT_EQ(describe(ws->close_reason()), "connection closed by server");
}

TEST_F(WsStreamTest, MaskedFrameBehindTheUpgradeFailsIt) {
  serve([&](TlsConnection& connection) {
    const std::string request = connection.read_until("\r\n\r\n");
    connection.write(test::ws_upgrade_answer(test::ws_request_key(request)) +
                     std::string("\x82\x82\x01\x02\x03\x04"
                                 "ab",
                                 8));
    connection.read_to_end();
  });
  auto ws = upgrade(Progress::Failed);
  ASSERT_NE(ws, nullptr);
  EXPECT_EQ(ws->failure().reason, CloseReason::ProtocolError);
  EXPECT_EQ(describe(ws->failure()), "WebSocket: server sent a masked frame");
}

TEST_F(WsStreamTest, RefusedUpgrade) {
  serve([&](TlsConnection& connection) {
    connection.read_until("\r\n\r\n");
    connection.write("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    connection.read_to_end();
  });
  auto ws = upgrade(Progress::Failed);
  ASSERT_NE(ws, nullptr);
  EXPECT_EQ(ws->failure().reason, CloseReason::Refused);
  EXPECT_EQ(describe(ws->failure()), "WebSocket: upgrade refused: 404 Not Found");
}

TEST_F(WsStreamTest, ServerGoneDuringTheUpgrade) {
  serve([&](TlsConnection& connection) {
    connection.read_until("\r\n\r\n");
    connection.close_notify();
  });
  auto ws = upgrade(Progress::Failed);
  ASSERT_NE(ws, nullptr);
  EXPECT_EQ(describe(ws->failure()), "WebSocket: upgrade failed: connection closed by server");
}

TEST_F(WsStreamTest, WritesStopAtTheBoundWhenTheServerDoesNotRead) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  serve([&, released](TlsConnection& connection) {
    if (!test::ws_accept_upgrade(connection)) return;
    released.wait_for(30s);  // not reading: the client's writes must come to a stop
    connection.read_to_end();
  });
  auto ws = upgrade(Progress::Done);
  ASSERT_NE(ws, nullptr);
  const std::string chunk(std::size_t{16} * 1024, 'w');
  std::size_t accepted = 0;
  bool blocked = false;
  while (!blocked && accepted < std::size_t{256} * 1024 * 1024) {
    const IoResult out = ws->write(chunk.data(), chunk.size());
    ASSERT_NE(out.status, IoResult::Status::Closed) << describe(ws->close_reason());
    accepted += out.bytes;
    blocked = out.status == IoResult::Status::WouldBlock;
  }
  release.set_value();
  ASSERT_TRUE(blocked) << "256 MiB went into a stream whose server reads nothing";
  EXPECT_TRUE(ws->has_pending_output());
  EXPECT_NE(ws->wanted_events(false, false) & EPOLLOUT, 0u)
      << "frames wait for the socket, so it must be watched for writing";
}

TEST_F(WsStreamTest, TheRelayGatesFramesThatCameWithTheUpgrade) {
  // A QoS 2 PUBLISH right behind the 101: refused before anyone is told to connect.
  serve([&](TlsConnection& connection) {
    const std::string request = connection.read_until("\r\n\r\n");
    connection.write(test::ws_upgrade_answer(test::ws_request_key(request)) +
                     test::ws_binary_frame(std::string("\x34\x05\x00\x01t\x00\x01", 7)));
    connection.read_to_end();
  });
  auto ws = upgrade(Progress::Done);
  ASSERT_NE(ws, nullptr);
  EXPECT_TRUE(ws->has_buffered_input());
  EventLoop loop;
  Relay relay(loop.get(), std::move(ws), [](const Close&) {});
  const auto refused = relay.take_buffered_input();
  ASSERT_TRUE(refused.has_value()) << "the gate let a QoS 2 PUBLISH through";
  EXPECT_EQ(describe(*refused), "DPS sent a QoS 2 PUBLISH, which DPS never does (protocol error)");
}

}  // namespace
}  // namespace dpsd::io::transport
