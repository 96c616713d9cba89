#pragma once
// Logging the way systemd's daemons do it. Where it goes (LogTarget, changeable at run time over
// org.freedesktop.LogControl1, app/log_control.hpp):
// - auto (the default): native journal entries when stderr is the journal stream systemd gave
//   us ($JOURNAL_STREAM matches fd 2), with PRIORITY, MESSAGE_ID, the caller's
//   CODE_FILE/CODE_LINE/CODE_FUNC and the structured fields; otherwise stderr, in the human form
//   "dpsd[pid]: level: message" on a terminal, and with the sd-daemon(3) "<N>" priority prefix
//   when stderr is anything else (systemd-cat, another supervisor, a pipe, a file), so that
//   `journalctl -p err` still works there and the "dpsd[pid]:" that journald adds is not doubled;
// - journal, console (the human form), console-prefixed ("<N>"), null (nothing).
// Callers never pass secrets; the only strings that reach here are built from config names, DPS
// replies and errno texts.
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/log_level.hpp"
#include "core/message_ids.hpp"

namespace dpsd::io {

using core::LogLevel;

using LogField = std::pair<std::string_view, std::string>;  // e.g. {"DPS_OPERATION_ID", "4.…"}

// Where a log call stands: the journal's CODE_FILE/CODE_LINE/CODE_FUNC. std::source_location
// would do, but clang-tidy 14 (Debian 12) cannot parse libstdc++ 12's <source_location>; the
// builtins both compilers share give the same answer, evaluated at the caller as a default
// argument.
struct CodeLocation {
  const char* file;
  unsigned line;
  const char* function;
  static constexpr CodeLocation current(const char* file = __builtin_FILE(),
                                        unsigned line = __builtin_LINE(),
                                        const char* function = __builtin_FUNCTION()) {
    return {file, line, function};
  }
};

enum class LogTarget { Auto, Journal, Console, ConsolePrefixed, Null };
std::string_view to_string(LogTarget target);  // as LogControl1 spells it: "auto", "console", …
std::optional<LogTarget> parse_log_target(std::string_view name);

// The most verbose syslog priority logged (0 emerg … 7 debug); info (6) unless changed.
void set_log_max_priority(int priority);
int log_max_priority();
void set_log_verbose(bool verbose);  // debug (7) when true, info (6) when false
void set_log_target(LogTarget target);
LogTarget log_target();

// `where` defaults to the caller's position: the journal's CODE_FILE/CODE_LINE/CODE_FUNC.
void log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields = {},
         CodeLocation where = CodeLocation::current());
// An event with a MESSAGE_ID (core/message_ids.hpp, explained in systemd/dpsd.catalog).
void log(LogLevel level, core::MessageId id, std::string_view message,
         std::initializer_list<LogField> fields = {}, CodeLocation where = CodeLocation::current());

// log_error("…") and its siblings: log() at one level with no fields. Function objects, so
// the five share one body; `where` still defaults to the caller's position.
template <LogLevel Level>
struct LevelLog {
  void operator()(std::string_view m, CodeLocation where = CodeLocation::current()) const {
    log(Level, m, {}, where);
  }
};
inline constexpr LevelLog<LogLevel::Error> log_error{};
inline constexpr LevelLog<LogLevel::Warning> log_warning{};
inline constexpr LevelLog<LogLevel::Notice> log_notice{};
inline constexpr LevelLog<LogLevel::Info> log_info{};
inline constexpr LevelLog<LogLevel::Debug> log_debug{};

}  // namespace dpsd::io
