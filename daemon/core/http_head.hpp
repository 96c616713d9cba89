#pragma once
// The one parser of an HTTP/1.x response head (RFC 9112 sections 2-5): the status line and the
// header fields up to the blank line. Two answers reach dpsd this way, both from servers it does
// not control: the proxy's answer to CONNECT and the server's answer to the WebSocket upgrade.
// Each caller decides what the head means (core/http_proxy.hpp, core/websocket.hpp); this file
// only decides whether it is a well-formed, bounded head.
//
// Strict on purpose: lines end in CRLF (a bare CR or LF fails at once instead of waiting for a
// blank line that never comes), no control characters but HTAB, no obsolete line folding, and
// bounds on the size and the number of header lines, so a hostile peer costs a bounded buffer.
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dpsd::core::http {

// ASCII lower case: header names and tokens compare case-insensitively (RFC 9110 5.1).
std::string lower(std::string_view text);

struct HeaderField {
  std::string name;   // lower case
  std::string value;  // without leading and trailing whitespace
};

struct ResponseHead {
  std::string status_line;           // "HTTP/1.1 101 Switching Protocols", without CRLF
  int status = 0;                    // three digits
  std::string reason;                // "Switching Protocols"; may be empty
  std::vector<HeaderField> headers;  // in the order received; duplicates kept

  // Every value of the fields named `name` (any case), in order: callers decide what two
  // answers to one question mean.
  std::vector<std::string_view> values(std::string_view name) const;
  // "101 Switching Protocols" (or "404" without a reason), printable(): what messages quote.
  std::string status_text() const;
};

// What was wrong, for callers that word their own messages.
enum class HeadProblem {
  None,
  NotHttp,         // does not start with "HTTP/": another protocol answered
  BadStatusLine,   // not "HTTP/1.x NNN reason", or a control character in it
  BadHeaderLine,   // no name, no colon, folding, a control character, a bare CR or LF
  TooLong,         // more than HeadLimits::max_bytes before the blank line
  TooManyHeaders,  // more than HeadLimits::max_headers header lines
};

struct HeadLimits {
  std::size_t max_bytes = std::size_t{16} * 1024;  // the whole head, blank line included
  std::size_t max_headers = 64;
};

// Incremental: feed() the bytes as they arrive, in chunks of any size; the verdict does not
// depend on how they are cut. After the blank line the stream belongs to the next protocol (the
// tunnel, WebSocket frames): those bytes, and any fed later, are kept in leftover().
class ResponseHeadParser {
 public:
  enum class State { NeedMore, Done, Failed };

  explicit ResponseHeadParser(HeadLimits limits = {}) : limits_(limits) {}
  State feed(const char* data, std::size_t n);
  State state() const { return state_; }

  const ResponseHead& head() const { return head_; }  // complete once Done
  HeadProblem problem() const { return problem_; }
  // The offending line, printable(), or "" when none applies (TooLong).
  const std::string& problem_line() const { return problem_line_; }
  // "bad header line: …", for people; the two callers word their own.
  std::string error() const;
  const std::string& leftover() const { return leftover_; }

 private:
  State fail(HeadProblem problem, std::string_view line, std::string why);
  State parse();
  std::string_view current_line() const;

  HeadLimits limits_;
  std::string buffer_;  // the head so far
  std::size_t line_start_ = 0;
  std::size_t lines_ = 0;  // complete lines so far
  std::string leftover_;
  ResponseHead head_;
  HeadProblem problem_ = HeadProblem::None;
  std::string problem_line_;
  std::string why_;
  State state_ = State::NeedMore;
};

// The shell shared by the two readers of one answer (the proxy's CONNECT answer, the WebSocket
// upgrade answer): a head parser, then the reader's verdict. After the verdict, bytes fed are
// kept in leftover() (Done: they belong to the next protocol) or ignored (Failed).
class HeadAnswer {
 public:
  enum class State { NeedMore, Done, Failed };
  State state() const { return state_; }
  const std::string& error() const { return error_; }  // for people, once Failed
  const std::string& leftover() const { return head_.leftover(); }

 protected:
  explicit HeadAnswer(HeadLimits limits) : head_(limits) {}
  // True when the verdict is in already and the bytes were handled as above.
  bool decided(const char* data, std::size_t n) {
    if (state_ == State::NeedMore) return false;
    if (state_ == State::Done) head_.feed(data, n);
    return true;
  }
  State fail(std::string message) {
    error_ = std::move(message);
    state_ = State::Failed;
    return state_;
  }

  ResponseHeadParser head_;
  State state_ = State::NeedMore;

 private:
  std::string error_;
};

// Text from a peer, fit for an error message: at most 80 characters, anything but printable
// ASCII replaced by '?', so a hostile server can put neither escape sequences nor a novel into
// our log.
std::string printable(std::string_view text);

}  // namespace dpsd::core::http
