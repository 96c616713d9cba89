#include "io/log.hpp"

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/text_sanitize.hpp"

namespace dpsd::io {

namespace {

bool g_verbose = false;

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

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::Error:
      return "error";
    case LogLevel::Warning:
      return "warning";
    case LogLevel::Notice:
      return "notice";
    case LogLevel::Info:
      return "info";
    case LogLevel::Debug:
      return "debug";
  }
  return "info";
}

}  // namespace

void set_log_verbose(bool verbose) {
  g_verbose = verbose;
}

// Log lines quote DPS replies and file contents: escaped and bounded here, once, for the journal
// and for stderr alike (a newline would forge a second line, an ESC would drive a terminal).
constexpr std::size_t kMaxLogMessage = 2048;

void log(LogLevel level, std::string_view raw_message, std::initializer_list<LogField> raw_fields) {
  if (level == LogLevel::Debug && !g_verbose) return;
  const std::string message = core::sanitize_text(raw_message, kMaxLogMessage);
  std::vector<std::pair<std::string_view, std::string>> fields;
  fields.reserve(raw_fields.size());
  for (const auto& [key, value] : raw_fields) fields.emplace_back(key, core::sanitize_text(value));
  if (stderr_is_journal()) {
    std::vector<std::string> items;
    items.reserve(fields.size() + 3);
    items.push_back("MESSAGE=" + std::string(message));
    items.push_back("PRIORITY=" + std::to_string(static_cast<int>(level)));
    items.emplace_back("SYSLOG_IDENTIFIER=dpsd");
    for (const auto& [key, value] : fields) items.push_back(std::string(key) + "=" + value);
    std::vector<iovec> iov;
    iov.reserve(items.size());
    for (auto& item : items) iov.push_back({item.data(), item.size()});
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0) return;
  }
  std::string line = "dpsd[" + std::to_string(getpid()) + "]: " + level_name(level) + ": ";
  line.append(message);
  for (const auto& [key, value] : fields) {
    line += " ";
    line += key;
    line += "=";
    line += value;
  }
  line += "\n";
  // One write per line so concurrent writers (tests capture stderr) never interleave mid-line.
  [[maybe_unused]] const auto written = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace dpsd::io
