#pragma once
// What dpsctl prints: the status summary, the JSON, times and spans in words, and the one rule
// for text from outside: it reaches the terminal escaped exactly once.
#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "dpsd_proxy.hpp"

namespace dpsctl {

// Text from the bus, made safe for the terminal. dpsd runs every string it puts on the bus
// through core::sanitize_text (daemon/app/bus_service.cpp); running that again here would show
// each escape with its backslash doubled ("\\e" for an ESC, "\\\\" for a backslash). Text that
// already is the sanitizer's output (no control character, no bidi control, valid UTF-8: only
// its backslashes are left, and they are harmless) is kept as it is; anything else (dbus-daemon's
// error text, a peer that does not sanitize) is escaped here. Either way: escaped exactly once.
// Idempotent, so escaping a whole line made of such pieces changes nothing.
std::string escape_once(std::string_view text);

// Text from our own command line: escaped here, once (a backslash in it becomes \\).
std::string escape_argument(std::string_view text);

// Prints a line of text that is already escaped (escape_once, escape_argument). escape_once
// is applied again as a safety net: it changes nothing in escaped text.
void print_line(std::ostream& out, const std::string& text);

// The status summary, one "Label: value" line per item.
void print_human(std::ostream& out, const Properties& p);
// The properties as one JSON object, as dpsd has them (the JSON dump escapes for JSON).
nlohmann::json to_json(const Properties& p);

// "State=retrying, last error: …" or "dpsd is not running", for a timeout message.
std::string describe_state(const Properties& p, bool present);
// "re-provisioning now", or when dpsd deferred the call: at what time, and why.
std::string start_words(std::uint64_t start_usec);

// "-" for an empty value.
std::string or_dash(const std::string& s);

}  // namespace dpsctl
