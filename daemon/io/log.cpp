#include "io/log.hpp"

#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

// Without this, sd_journal_sendv would add CODE_FILE=log.cpp itself; the caller's position is
// passed in instead (core/log_format.hpp).
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/enum_names.hpp"
#include "core/log_format.hpp"
#include "core/text_sanitize.hpp"

namespace dpsd::io {

namespace {

constexpr std::string_view kIdentifier = "dpsd";

// Touched only on the daemon's one loop thread (and before it starts).
int g_max_priority = static_cast<int>(LogLevel::Info);
LogTarget g_target = LogTarget::Auto;

// True when fd 2 is the journal stream systemd connected us to (see systemd.exec(5),
// $JOURNAL_STREAM): then native journal messages carry our structured fields.
bool stderr_is_journal() {
  static const bool value = [] {
    const char* stream = std::getenv("JOURNAL_STREAM");
    if (stream == nullptr) return false;
    struct stat st {};
    if (fstat(STDERR_FILENO, &st) < 0) return false;
    unsigned long long dev = 0;
    unsigned long long ino = 0;
    if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
    return st.st_dev == dev && st.st_ino == ino;
  }();
  return value;
}

bool stderr_is_terminal() {
  static const bool value = ::isatty(STDERR_FILENO) == 1;
  return value;
}

// "/build/…/daemon/app/daemon.cpp" → "daemon/app/daemon.cpp": the same on every build machine.
std::string_view source_file(std::string_view path) {
  const auto at = path.rfind("/daemon/");
  return at == std::string_view::npos ? path : path.substr(at + 1);
}

void write_stderr(const std::string& line) {
  // One write per line so concurrent writers (tests capture stderr) never interleave mid-line.
  [[maybe_unused]] const auto written = ::write(STDERR_FILENO, line.data(), line.size());
}

bool send_to_journal(const core::LogRecord& entry) {
  std::vector<std::string> items = core::journal_items(entry, kIdentifier);
  std::vector<iovec> iov;
  iov.reserve(items.size());
  for (auto& item : items) iov.push_back({item.data(), item.size()});
  return sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0;
}

// Log lines quote DPS replies and file contents: escaped and bounded here, once, for the journal
// and for stderr alike (a newline would forge a second line, an ESC would drive a terminal).
constexpr std::size_t kMaxLogMessage = 2048;

void emit(LogLevel level, std::string_view message_id, std::string_view raw_message,
          std::initializer_list<LogField> raw_fields, const CodeLocation& where) {
  if (static_cast<int>(level) > g_max_priority || g_target == LogTarget::Null) return;
  const std::string message = core::sanitize_text(raw_message, kMaxLogMessage);
  core::LogRecord entry;
  entry.level = level;
  entry.message = message;
  entry.message_id = message_id;
  entry.fields.reserve(raw_fields.size());
  for (const auto& [key, value] : raw_fields) {
    entry.fields.emplace_back(key, core::sanitize_text(value));
  }
  entry.code_file = source_file(where.file);
  entry.code_line = where.line;
  entry.code_func = where.function;

  const bool journal =
      g_target == LogTarget::Journal || (g_target == LogTarget::Auto && stderr_is_journal());
  if (journal && send_to_journal(entry)) return;
  const bool prefixed = g_target == LogTarget::ConsolePrefixed ||
                        (g_target != LogTarget::Console && !stderr_is_terminal());
  write_stderr(core::console_line(entry,
                                  prefixed ? core::ConsoleForm::Prefixed : core::ConsoleForm::Human,
                                  kIdentifier, static_cast<long>(::getpid())));
}

}  // namespace

std::string_view to_string(LogTarget target) {
  constexpr std::array<std::string_view, 5> kNames = {"auto", "journal", "console",
                                                      "console-prefixed", "null"};
  return core::enum_name(target, kNames, std::string_view("auto"));
}

std::optional<LogTarget> parse_log_target(std::string_view name) {
  for (const LogTarget t : {LogTarget::Auto, LogTarget::Journal, LogTarget::Console,
                            LogTarget::ConsolePrefixed, LogTarget::Null}) {
    if (to_string(t) == name) return t;
  }
  return std::nullopt;
}

void set_log_max_priority(int priority) {
  g_max_priority = priority;
}
int log_max_priority() {
  return g_max_priority;
}
void set_log_verbose(bool verbose) {
  g_max_priority = static_cast<int>(verbose ? LogLevel::Debug : LogLevel::Info);
}
void set_log_target(LogTarget target) {
  g_target = target;
}
LogTarget log_target() {
  return g_target;
}

void log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields,
         CodeLocation where) {
  emit(level, {}, message, fields, where);
}

void log(LogLevel level, core::MessageId id, std::string_view message,
         std::initializer_list<LogField> fields, CodeLocation where) {
  emit(level, id.hex, message, fields, where);
}

}  // namespace dpsd::io
