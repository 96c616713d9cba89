#pragma once
// Logging: to the journal with priorities and structured fields when stderr is connected to it
// (systemd sets $JOURNAL_STREAM), otherwise plain lines on stderr. Callers never pass secrets;
// the only strings that reach here are built from config names, DPS replies and errno texts.
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "core/log_level.hpp"

namespace dpsd::io {

using core::LogLevel;

using LogField = std::pair<std::string_view, std::string>;  // e.g. {"DPS_OPERATION_ID", "4.…"}

void set_log_verbose(bool verbose);  // Debug lines are dropped unless verbose
void log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields = {});

inline void log_error(std::string_view m) {
  log(LogLevel::Error, m);
}
inline void log_warning(std::string_view m) {
  log(LogLevel::Warning, m);
}
inline void log_notice(std::string_view m) {
  log(LogLevel::Notice, m);
}
inline void log_info(std::string_view m) {
  log(LogLevel::Info, m);
}
inline void log_debug(std::string_view m) {
  log(LogLevel::Debug, m);
}

}  // namespace dpsd::io
