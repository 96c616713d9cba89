#include "core/config_values.hpp"

#include <algorithm>
#include <limits>

#include "core/duration.hpp"

namespace dpsd::core::config_values {

namespace {

using std::chrono::milliseconds;

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

Status check_port(std::string_view text, std::optional<std::uint16_t>& port) {
  if (text.empty() || text.size() > 5 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return Error{"port " + quoted(text) + " is not a number"};
  }
  const int value = std::stoi(std::string(text));
  if (value < 1 || value > 65535) {
    return Error{"port " + std::string(text) + " is out of range (1-65535)"};
  }
  port = static_cast<std::uint16_t>(value);
  return ok_status();
}

}  // namespace

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

std::optional<std::string_view> string_of(const toml::node& node) {
  if (const auto* value = node.as_string()) return std::string_view(value->get());
  return std::nullopt;
}

Status check_endpoint(std::string_view text, std::string& host,
                      std::optional<std::uint16_t>& port) {
  static constexpr std::string_view kShape = "must be a host name or host:port";
  if (text.empty()) return Error{"must not be empty"};
  if (text.find("://") != std::string_view::npos) {
    return Error{std::string(kShape) + ", not a URL (leave out the scheme)"};
  }
  port.reset();
  std::string_view rest;
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return Error{"has '[' but no ']'"};
    const std::string_view address = text.substr(1, close - 1);
    if (address.empty() || !std::all_of(address.begin(), address.end(),
                                        [](char c) { return is_hex(c) || c == ':' || c == '.'; })) {
      return Error{"has an invalid IPv6 address in brackets"};
    }
    host = address;
    rest = text.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return Error{std::string(kShape)};
  } else {
    const auto colons = std::count(text.begin(), text.end(), ':');
    if (colons > 1) {
      return Error{"an IPv6 address must be in brackets, e.g. \"[2001:db8::1]:8883\""};
    }
    const auto colon = text.find(':');
    const std::string_view name = text.substr(0, colon);
    if (name.empty() || !std::all_of(name.begin(), name.end(),
                                     [](char c) { return is_alnum(c) || c == '-' || c == '.'; })) {
      return Error{std::string(kShape)};
    }
    host = name;
    if (colon != std::string_view::npos) rest = text.substr(colon);
  }
  if (!rest.empty()) return check_port(rest.substr(1), port);
  return ok_status();
}

Status check_id_scope(std::string_view text) {
  if (text.empty()) return Error{"must not be empty"};
  if (!std::all_of(text.begin(), text.end(), is_alnum)) {
    return Error{
        "must contain only letters and digits (the ID Scope from the DPS overview page, e.g. "
        "\"0ne0012ABCD\")"};
  }
  return ok_status();
}

// DPS's rule, as Microsoft documents it (learn.microsoft.com/azure/iot-dps/concepts-service,
// "Registration ID", and every enrollment how-to): "The registration ID is a case-insensitive
// string (up to 128 characters long) of alphanumeric characters plus the special characters:
// '-', '.', '_', ':'. The last character must be alphanumeric or dash ('-')." The document says
// nothing about the first character, so neither does this check: a leading '-' is accepted.
// Upper case is accepted too (the id is case-insensitive; the SDK samples use
// "myRegistrationId").
Status check_registration_id(std::string_view text) {
  if (text.empty()) return Error{"must not be empty"};
  if (text.size() > 128) {
    return Error{"is " + std::to_string(text.size()) + " characters long; DPS allows at most 128"};
  }
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (!is_alnum(c) && c != '-' && c != '.' && c != '_' && c != ':') {
      const bool printable = c >= 0x21 && c <= 0x7e;
      const std::string shown =
          printable ? std::string("'") + c + "'" : std::string("a space or non-ASCII character");
      return Error{"may contain only letters, digits and - . _ : (found " + shown +
                   " at position " + std::to_string(i + 1) + ")"};
    }
  }
  const char last = text.back();
  if (!is_alnum(last) && last != '-') {
    return Error{std::string("must end with a letter, a digit or '-' (DPS's rule), not '") + last +
                 "'"};
  }
  return ok_status();
}

Status check_absolute_path(std::string_view text) {
  if (text.find('\0') != std::string_view::npos) return Error{"must not contain a NUL character"};
  if (text.empty() || text.front() != '/') {
    return Error{"must be an absolute path (got " + quoted(text) + ")"};
  }
  return ok_status();
}

Expected<milliseconds> duration_of(const toml::node& node) {
  static const std::string kShape =
      "must be a duration: a number of seconds or a string such as \"250ms\", \"30s\", \"5min\", "
      "\"1h\"";
  if (const auto* integer = node.as_integer()) {
    const std::int64_t seconds = integer->get();
    if (seconds < 0) return Error{"must not be negative"};
    if (seconds > std::numeric_limits<std::int64_t>::max() / 1000 / 1000) {
      return Error{"is too large"};
    }
    return milliseconds(seconds * 1000);
  }
  if (const auto text = string_of(node)) {
    if (auto parsed = parse_duration(*text)) return *parsed;
    return Error{kShape + " (got " + quoted(*text) + ")"};
  }
  return Error{kShape};
}

Status set_positive_duration(milliseconds& field, const toml::node& node) {
  auto value = duration_of(node);
  if (!value) return value.failure();
  if (value->count() == 0) return Error{"must be greater than zero"};
  field = *value;
  return ok_status();
}

Status set_path(std::filesystem::path& field, const toml::node& node) {
  const auto text = string_of(node);
  if (!text) return Error{std::string(kMustBeString)};
  if (auto checked = check_absolute_path(*text); !checked) return checked;
  field = std::filesystem::path(*text);
  return ok_status();
}

Status set_optional_path(std::optional<std::filesystem::path>& field, const toml::node& node) {
  const auto text = string_of(node);
  if (!text) return Error{std::string(kMustBeString)};
  if (text->empty()) {
    field.reset();
    return ok_status();
  }
  if (auto checked = check_absolute_path(*text); !checked) return checked;
  field = std::filesystem::path(*text);
  return ok_status();
}

}  // namespace dpsd::core::config_values
