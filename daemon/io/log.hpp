#pragma once
// Logging: to the journal with priorities and structured fields when stderr is connected to it
// (systemd sets $JOURNAL_STREAM), otherwise plain lines on stderr. Callers never pass secrets;
// the only strings that reach here are built from config names, DPS replies and errno texts.
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace dpsd::io {

enum class Level { Error = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

using LogField = std::pair<std::string_view, std::string>;  // e.g. {"DPS_OPERATION_ID", "4.…"}

void set_log_verbose(bool verbose);  // Debug lines are dropped unless verbose
void log(Level level, std::string_view message, std::initializer_list<LogField> fields = {});

inline void log_error(std::string_view m) {
  log(Level::Error, m);
}
inline void log_warning(std::string_view m) {
  log(Level::Warning, m);
}
inline void log_notice(std::string_view m) {
  log(Level::Notice, m);
}
inline void log_info(std::string_view m) {
  log(Level::Info, m);
}
inline void log_debug(std::string_view m) {
  log(Level::Debug, m);
}

}  // namespace dpsd::io
