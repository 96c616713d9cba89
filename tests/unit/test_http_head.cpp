// The one HTTP response-head parser (the proxy's CONNECT answer, the WebSocket upgrade answer)
// against well-formed heads cut every way and against hostile ones.
#include <gtest/gtest.h>

#include <string>

#include "core/http_head.hpp"

namespace dpsd::core::http {
namespace {

using State = ResponseHeadParser::State;

State parse(ResponseHeadParser& parser, const std::string& text) {
  return parser.feed(text.data(), text.size());
}

const std::string kGood =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nconnection:Upgrade \r\n"
    "X-Empty:\r\nX-Tab:\tvalue\twith\ttabs\t\r\n\r\n";

TEST(HttpHead, ParsesStatusReasonAndHeaders) {
  ResponseHeadParser parser;
  ASSERT_EQ(parse(parser, kGood), State::Done) << parser.error();
  const ResponseHead& head = parser.head();
  EXPECT_EQ(head.status, 101);
  EXPECT_EQ(head.reason, "Switching Protocols");
  EXPECT_EQ(head.status_line, "HTTP/1.1 101 Switching Protocols");
  EXPECT_EQ(head.status_text(), "101 Switching Protocols");
  ASSERT_EQ(head.headers.size(), 4u);
  EXPECT_EQ(head.headers[0].name, "upgrade");
  EXPECT_EQ(head.headers[0].value, "websocket");
  EXPECT_EQ(head.values("CONNECTION"), std::vector<std::string_view>{"Upgrade"});
  EXPECT_EQ(head.values("x-empty"), std::vector<std::string_view>{""});
  EXPECT_EQ(head.values("x-tab"), std::vector<std::string_view>{"value\twith\ttabs"});
  EXPECT_TRUE(head.values("absent").empty());
  EXPECT_TRUE(parser.leftover().empty());
}

TEST(HttpHead, SameVerdictHoweverTheBytesAreCut) {
  const std::string text = kGood + "\x82\x02" + "ab";
  for (std::size_t step = 1; step <= 7; ++step) {
    ResponseHeadParser parser;
    State state = State::NeedMore;
    for (std::size_t at = 0; at < text.size(); at += step) {
      state = parser.feed(text.data() + at, std::min(step, text.size() - at));
    }
    ASSERT_EQ(state, State::Done) << "step " << step << ": " << parser.error();
    EXPECT_EQ(parser.head().headers.size(), 4u);
    EXPECT_EQ(parser.leftover(),
              "\x82\x02"
              "ab")
        << "step " << step;
  }
}

TEST(HttpHead, BytesAfterTheHeadAreLeftoverAndNeverParsed) {
  ResponseHeadParser parser;
  // Control characters and bare LFs after the blank line belong to the next protocol.
  ASSERT_EQ(parse(parser, std::string("HTTP/1.0 200 OK\r\n\r\n\x00\n\x1b", 22)), State::Done);
  EXPECT_EQ(parser.leftover(), std::string("\x00\n\x1b", 3));
  EXPECT_EQ(parse(parser, "more"), State::Done);
  EXPECT_EQ(parser.leftover(), std::string("\x00\n\x1bmore", 7));
}

TEST(HttpHead, StatusWithoutReason) {
  for (const char* text : {"HTTP/1.1 404\r\n\r\n", "HTTP/1.1 404 \r\n\r\n"}) {
    ResponseHeadParser parser;
    ASSERT_EQ(parse(parser, text), State::Done) << text << ": " << parser.error();
    EXPECT_EQ(parser.head().status, 404);
    EXPECT_EQ(parser.head().reason, "");
    EXPECT_EQ(parser.head().status_text(), "404");
  }
}

TEST(HttpHead, DuplicateHeadersAreAllKeptInOrder) {
  ResponseHeadParser parser;
  ASSERT_EQ(parse(parser,
                  "HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: one\r\nX: a\r\n"
                  "sec-websocket-accept: two\r\n\r\n"),
            State::Done);
  EXPECT_EQ(parser.head().values("Sec-WebSocket-Accept"),
            (std::vector<std::string_view>{"one", "two"}));
}

TEST(HttpHead, AnotherProtocolFailsAtItsFirstByte) {
  for (const char* text :
       {"SSH-2.0-OpenSSH_9.2\r\n", "\x16\x03\x01\x02\x00", "\r\n\r\n", "http/1.1 200 OK\r\n\r\n"}) {
    ResponseHeadParser parser;
    EXPECT_EQ(parser.feed(text, 1), State::Failed) << text;
    EXPECT_EQ(parser.problem(), HeadProblem::NotHttp) << text;
  }
  ResponseHeadParser ssh;
  EXPECT_EQ(parse(ssh, "SSH-2.0-OpenSSH_9.2\r\n"), State::Failed);
  EXPECT_EQ(ssh.problem_line(), "SSH-2.0-OpenSSH_9.2");  // the whole first line is quoted
  EXPECT_EQ(ssh.error(), "not an HTTP response: SSH-2.0-OpenSSH_9.2");
}

TEST(HttpHead, BadStatusLines) {
  for (const char* text :
       {"HTTP/2 200\r\n\r\n", "HTTP/1.1\r\n\r\n", "HTTP/1.1 20\r\n\r\n", "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n", "HTTP/1.1  200 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.x 200 OK\r\n\r\n"}) {
    ResponseHeadParser parser;
    EXPECT_EQ(parse(parser, text), State::Failed) << text;
    EXPECT_EQ(parser.problem(), HeadProblem::BadStatusLine) << text;
  }
  ResponseHeadParser parser;
  EXPECT_EQ(parse(parser, "HTTP/2 200\r\n\r\n"), State::Failed);
  EXPECT_EQ(parser.problem(), HeadProblem::BadStatusLine);
  EXPECT_EQ(parser.problem_line(), "HTTP/2 200");
}

TEST(HttpHead, BadHeaderLines) {
  for (const char* line : {"no colon", ": empty name", "Space Before: x", "Name : x",
                           " folded: continuation", "\tfolded", " ", "Na(me): x", "Na\"me: x"}) {
    ResponseHeadParser parser;
    EXPECT_EQ(parse(parser, std::string("HTTP/1.1 200 OK\r\n") + line + "\r\n\r\n"), State::Failed)
        << line;
    EXPECT_EQ(parser.problem(), HeadProblem::BadHeaderLine) << line;
  }
}

TEST(HttpHead, LinesMustEndInCrlf) {
  // A bare LF or CR fails as soon as it arrives instead of waiting for a CRLF CRLF that a
  // server using bare LFs never sends.
  struct Case {
    std::string text;
    HeadProblem problem;
  };
  for (const Case& c : {Case{"HTTP/1.1 200 OK\n", HeadProblem::BadStatusLine},
                        Case{"HTTP/1.1 200 OK\rX", HeadProblem::BadStatusLine},
                        Case{"HTTP/1.1 200 OK\r\nA: b\n", HeadProblem::BadHeaderLine},
                        Case{"HTTP/1.1 200 OK\r\nA: b\r\r\n", HeadProblem::BadHeaderLine},
                        Case{"HTTP/1.1 200 OK\r\n\n", HeadProblem::BadHeaderLine}}) {
    ResponseHeadParser parser;
    EXPECT_EQ(parse(parser, c.text), State::Failed) << c.text;
    EXPECT_EQ(parser.problem(), c.problem) << c.text;
  }
}

TEST(HttpHead, ControlCharactersAreRefusedAndNeverQuoted) {
  for (const std::string& bad :
       {std::string("\x1b[31m"), std::string(1, '\0'), std::string("\x7f"), std::string("\x01")}) {
    ResponseHeadParser in_status;
    EXPECT_EQ(parse(in_status, "HTTP/1.1 500 " + bad + "boom\r\n\r\n"), State::Failed);
    EXPECT_EQ(in_status.problem(), HeadProblem::BadStatusLine);
    ResponseHeadParser in_value;
    EXPECT_EQ(parse(in_value, "HTTP/1.1 200 OK\r\nX: a" + bad + "b\r\n\r\n"), State::Failed);
    EXPECT_EQ(in_value.problem(), HeadProblem::BadHeaderLine);
    for (const ResponseHeadParser* parser : {&in_status, &in_value}) {
      for (char c : parser->error()) {
        const auto u = static_cast<unsigned char>(c);
        EXPECT_TRUE(u >= 0x20 && u < 0x7f) << "unprintable byte in: " << parser->error();
      }
    }
  }
  // Bytes from 0x80 up (obs-text) are allowed in values, and quoted as '?'.
  ResponseHeadParser latin;
  EXPECT_EQ(parse(latin, "HTTP/1.1 200 OK\r\nServer: caf\xe9\r\n\r\n"), State::Done);
  EXPECT_EQ(printable(latin.head().values("server").at(0)), "caf?");
}

TEST(HttpHead, SizeIsBounded) {
  const HeadLimits limits{.max_bytes = 64, .max_headers = 64};
  std::string exact = "HTTP/1.1 200 OK\r\nX: ";
  exact += std::string(64 - exact.size() - 4, 'v') + "\r\n\r\n";
  ASSERT_EQ(exact.size(), 64u);
  ResponseHeadParser fits(limits);
  EXPECT_EQ(parse(fits, exact), State::Done) << fits.error();

  ResponseHeadParser over(limits);
  EXPECT_EQ(parse(over, "HTTP/1.1 200 OK\r\nX: v" + exact.substr(20)), State::Failed);
  EXPECT_EQ(over.problem(), HeadProblem::TooLong);

  // No CRLF at all: fails at the bound, not at the end of the input.
  ResponseHeadParser endless;
  const std::string flood = "HTTP/1.1 200 OK" + std::string(std::size_t{100} * 1024, 'x');
  EXPECT_EQ(parse(endless, flood), State::Failed);
  EXPECT_EQ(endless.problem(), HeadProblem::TooLong);
  EXPECT_EQ(endless.error(), "head too long");
}

TEST(HttpHead, HeaderCountIsBounded) {
  std::string sixty_four = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 64; ++i) sixty_four += "X-" + std::to_string(i) + ": v\r\n";
  ResponseHeadParser fits;
  EXPECT_EQ(parse(fits, sixty_four + "\r\n"), State::Done) << fits.error();
  EXPECT_EQ(fits.head().headers.size(), 64u);

  ResponseHeadParser over;
  EXPECT_EQ(parse(over, sixty_four + "X-64: v\r\n"), State::Failed);  // before the blank line
  EXPECT_EQ(over.problem(), HeadProblem::TooManyHeaders);
}

TEST(HttpHead, AFailedParserStaysFailed) {
  ResponseHeadParser parser;
  EXPECT_EQ(parse(parser, "HTTP/1.1 200 OK\n"), State::Failed);
  EXPECT_EQ(parse(parser, "\r\n\r\n"), State::Failed);
  EXPECT_TRUE(parser.leftover().empty());
}

TEST(HttpHead, PrintableIsBoundedAndAscii) {
  EXPECT_EQ(printable("ok \x01\x7f\xff"), "ok ???");
  EXPECT_EQ(printable(std::string(200, 'a')).size(), 80u);
}

}  // namespace
}  // namespace dpsd::core::http
