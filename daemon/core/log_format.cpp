#include "core/log_format.hpp"

#include <array>

#include "core/enum_names.hpp"

namespace dpsd::core {

namespace {

constexpr std::array<std::string_view, 8> kPriorityNames = {"emerg",   "alert",  "crit", "err",
                                                            "warning", "notice", "info", "debug"};

// The level words of the human form: the ones dpsd has always printed ("error", not "err").
std::string_view human_level(LogLevel level) {
  constexpr std::array<std::string_view, 5> kNames = {"error", "warning", "notice", "info",
                                                      "debug"};
  return enum_name(level, kNames, std::string_view("info"), LogLevel::Error);
}

void append_fields(std::string& line, const LogRecord& entry) {
  for (const auto& [key, value] : entry.fields) {
    if (key.empty() || value.empty()) continue;
    line += ' ';
    line += key;
    line += '=';
    line += value;
  }
}

}  // namespace

std::vector<std::string> journal_items(const LogRecord& entry, std::string_view identifier) {
  std::vector<std::string> items;
  items.reserve(entry.fields.size() + 7);
  const auto add = [&items](std::string_view key, std::string_view value) {
    if (key.empty() || value.empty()) return;
    std::string item(key);
    item += '=';
    item += value;
    items.push_back(std::move(item));
  };
  add("MESSAGE", entry.message);
  add("PRIORITY", std::to_string(static_cast<int>(entry.level)));
  add("SYSLOG_IDENTIFIER", identifier);
  add("MESSAGE_ID", entry.message_id);
  add("CODE_FILE", entry.code_file);
  if (entry.code_line > 0) add("CODE_LINE", std::to_string(entry.code_line));
  add("CODE_FUNC", entry.code_func);
  for (const auto& [key, value] : entry.fields) add(key, value);
  return items;
}

std::string console_line(const LogRecord& entry, ConsoleForm form, std::string_view identifier,
                         long pid) {
  std::string line;
  if (form == ConsoleForm::Prefixed) {
    line = "<" + std::to_string(static_cast<int>(entry.level)) + ">";
  } else {
    line.append(identifier);
    line += "[" + std::to_string(pid) + "]: ";
    line.append(human_level(entry.level));
    line += ": ";
  }
  line.append(entry.message);
  append_fields(line, entry);
  line += '\n';
  return line;
}

std::string_view priority_name(int priority) {
  if (priority < 0 || priority >= static_cast<int>(kPriorityNames.size())) return "info";
  return kPriorityNames[static_cast<std::size_t>(priority)];
}

int parse_priority(std::string_view name) {
  for (std::size_t i = 0; i < kPriorityNames.size(); ++i) {
    if (kPriorityNames[i] == name) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace dpsd::core
