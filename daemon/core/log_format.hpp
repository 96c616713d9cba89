#pragma once
// What a log entry looks like, apart from writing it (io/log.cpp writes): the journal fields of a
// native entry, and the line written to stderr when there is no journal. Pure, so the rules are
// unit-tested:
// - no empty fields (a field with an empty value is left out, name and all);
// - CODE_FILE/CODE_LINE/CODE_FUNC name the caller of io::log, not the logging code;
// - on stderr without the journal, either the sd-daemon(3) "<N>" priority prefix (for a reader
//   that is a log collector: systemd-cat, another supervisor, a pipe) or, on a terminal, the
//   human form "dpsd[pid]: level: …". Never both: journald adds "dpsd[pid]:" itself.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/log_level.hpp"

namespace dpsd::core {

struct LogRecord {
  LogLevel level = LogLevel::Info;
  std::string_view message;                                      // already sanitized
  std::string_view message_id;                                   // 32 hex digits, or empty
  std::vector<std::pair<std::string_view, std::string>> fields;  // already sanitized
  std::string_view code_file;  // the caller's source file, or empty
  unsigned code_line = 0;
  std::string_view code_func;
};

// The KEY=value items of a native journal entry, in order: MESSAGE, PRIORITY,
// SYSLOG_IDENTIFIER, MESSAGE_ID, CODE_FILE, CODE_LINE, CODE_FUNC, then the caller's fields.
std::vector<std::string> journal_items(const LogRecord& entry, std::string_view identifier);

enum class ConsoleForm {
  Human,     // "dpsd[pid]: level: message KEY=value…\n"
  Prefixed,  // "<N>message KEY=value…\n" (sd-daemon(3))
};
std::string console_line(const LogRecord& entry, ConsoleForm form, std::string_view identifier,
                         long pid);

// syslog(3) priority names as org.freedesktop.LogControl1(5) spells them ("emerg" … "debug").
std::string_view priority_name(int priority);
// -1 when `name` is none of them.
int parse_priority(std::string_view name);

}  // namespace dpsd::core
