#include "core/http_head.hpp"

#include <algorithm>
#include <cctype>
#include <string_view>

namespace dpsd::core::http {
namespace {

constexpr std::string_view kHttp = "HTTP/";

bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim_ows(std::string_view text) {
  while (!text.empty() && is_ows(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_ows(text.back())) text.remove_suffix(1);
  return text;
}

// RFC 9110 5.6.2: a header name is a token.
bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Everything but HTAB below 0x20, and DEL. Bytes from 0x80 up are obs-text, allowed in values.
bool is_control(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u < 0x20 && c != '\t') || u == 0x7f;
}

}  // namespace

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 80)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  return out;
}

std::vector<std::string_view> ResponseHead::values(std::string_view name) const {
  const std::string wanted = lower(name);
  std::vector<std::string_view> out;
  for (const HeaderField& field : headers) {
    if (field.name == wanted) out.emplace_back(field.value);
  }
  return out;
}

std::string ResponseHead::status_text() const {
  // The status line without "HTTP/1.x ", as sent (trimmed).
  return printable(trim_ows(std::string_view(status_line).substr(9)));
}

std::string ResponseHeadParser::error() const {
  if (problem_line_.empty()) return why_;
  return why_ + ": " + problem_line_;
}

ResponseHeadParser::State ResponseHeadParser::fail(HeadProblem problem, std::string_view line,
                                                   std::string why) {
  problem_ = problem;
  problem_line_ = printable(line);
  why_ = std::move(why);
  buffer_.clear();
  state_ = State::Failed;
  return state_;
}

std::string_view ResponseHeadParser::current_line() const {
  return std::string_view(buffer_).substr(line_start_);
}

// One byte at a time: the checks that need no complete line (the "HTTP/" prefix, CR only
// before LF, control characters, the bounds) fail as soon as the offending byte arrives, and
// the end of the head is found exactly, so what follows it is never looked at.
ResponseHeadParser::State ResponseHeadParser::feed(const char* data, std::size_t n) {
  if (state_ == State::Done) leftover_.append(data, n);
  if (state_ != State::NeedMore) return state_;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = data[i];
    if (buffer_.size() >= limits_.max_bytes) return fail(HeadProblem::TooLong, {}, "head too long");
    const bool after_cr = !buffer_.empty() && buffer_.back() == '\r';
    buffer_ += c;
    const bool in_status_line = lines_ == 0;
    if (buffer_.size() <= kHttp.size() && c != kHttp[buffer_.size() - 1]) {
      // Quote the first line as far as this chunk has it, not just the bytes so far.
      std::string first = buffer_;
      for (std::size_t j = i + 1; j < n && first.size() < 80 && data[j] != '\r' && data[j] != '\n';
           ++j) {
        first += data[j];
      }
      return fail(HeadProblem::NotHttp, first, "not an HTTP response");
    }
    const HeadProblem bad_line =
        in_status_line ? HeadProblem::BadStatusLine : HeadProblem::BadHeaderLine;
    if (after_cr && c != '\n') return fail(bad_line, current_line(), "CR without LF");
    if (c == '\r') continue;
    if (c == '\n') {
      if (!after_cr) return fail(bad_line, current_line(), "LF without CR");
      const std::size_t line_length = buffer_.size() - line_start_ - 2;
      line_start_ = buffer_.size();
      ++lines_;
      if (line_length == 0 && lines_ > 1) {  // the blank line
        leftover_.assign(data + i + 1, n - i - 1);
        return parse();
      }
      if (lines_ > limits_.max_headers + 1) {
        return fail(HeadProblem::TooManyHeaders, {},
                    "more than " + std::to_string(limits_.max_headers) + " header lines");
      }
      continue;
    }
    if (is_control(c)) return fail(bad_line, current_line(), "control character");
  }
  return state_;
}

// The complete head, every line ending in CRLF and free of control characters (feed checked).
ResponseHeadParser::State ResponseHeadParser::parse() {
  std::string_view text(buffer_);
  text.remove_suffix(2);  // the blank line's CRLF
  std::size_t eol = text.find("\r\n");
  const std::string_view status_line = text.substr(0, eol);
  text.remove_prefix(eol + 2);

  // "HTTP/1.1 101 Switching Protocols": HTTP/1.x, one space, three digits, a space before the
  // reason (which may be empty or absent).
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." ||
      !is_digit(status_line[7]) || status_line[8] != ' ' ||
      !std::all_of(status_line.begin() + 9, status_line.begin() + 12, is_digit) ||
      (status_line.size() > 12 && status_line[12] != ' ')) {
    return fail(HeadProblem::BadStatusLine, status_line, "bad status line");
  }
  head_.status_line = std::string(status_line);
  head_.status = std::stoi(std::string(status_line.substr(9, 3)));
  if (status_line.size() > 13) head_.reason = std::string(trim_ows(status_line.substr(13)));

  while (!text.empty()) {
    eol = text.find("\r\n");
    const std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol + 2);
    // No whitespace before the colon (RFC 9112 5.1) and no folding (5.2): both have been used
    // to smuggle a header past one parser and into another.
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 ||
        !std::all_of(line.begin(), line.begin() + static_cast<std::ptrdiff_t>(colon), is_tchar)) {
      return fail(HeadProblem::BadHeaderLine, line, "bad header line");
    }
    head_.headers.push_back(
        {lower(line.substr(0, colon)), std::string(trim_ows(line.substr(colon + 1)))});
  }
  buffer_.clear();
  state_ = State::Done;
  return state_;
}

}  // namespace dpsd::core::http
