#pragma once
// The one place where text from outside (DPS replies, file contents, errno texts that quote
// them) is made safe for a line-oriented sink: sd_notify STATUS=, the journal MESSAGE and its
// fields, stderr, D-Bus string properties and dpsctl's terminal output. Every sink calls
// sanitize_text(); nothing else escapes.
//
// A STATUS= that contains "\nWATCHDOG=trigger" is two assignments to systemd, and an ESC in a
// log line is a terminal command to whoever reads it, so the rules are:
// - C0 controls, DEL and C1 controls (U+0080..U+009F) become \n, \r, \t, \e or \xNN;
// - the Unicode line and paragraph separators and the bidirectional overrides and isolates
//   (U+2028, U+2029, U+202A..U+202E, U+2066..U+2069), which reorder what a terminal shows,
//   become \u{XXXX};
// - bytes that are not valid UTF-8 become \xNN;
// - a backslash becomes \\, so the escaping is unambiguous;
// - the result is cut to max_bytes (never inside an escape or a UTF-8 sequence) and then says
//   how long the original was: "…[truncated, 200000 bytes]".
#include <cstddef>
#include <string>
#include <string_view>

namespace dpsd::core {

// Long enough for any error DPS documents and any path; short enough that one hostile reply
// cannot turn into a megabyte of journal.
inline constexpr std::size_t kMaxSanitizedText = 1024;

std::string sanitize_text(std::string_view text, std::size_t max_bytes = kMaxSanitizedText);

}  // namespace dpsd::core
