#include "core/reply_validation.hpp"

#include <string>

namespace dpsd::core {

namespace {

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

std::string describe_byte(char c) {
  const auto byte = static_cast<unsigned char>(c);
  if (byte >= 0x21 && byte < 0x7F) return std::string("'") + c + "'";
  static constexpr char kHex[] = "0123456789abcdef";
  return std::string("byte 0x") + kHex[byte >> 4U] + kHex[byte & 0x0FU];
}

Status too_long(std::size_t size, std::size_t max) {
  return Error{"is " + std::to_string(size) + " characters, at most " + std::to_string(max)};
}

Status bad_character(char c, std::size_t position) {
  return Error{"has " + describe_byte(c) + " at position " + std::to_string(position + 1) +
               ", which is not allowed"};
}

}  // namespace

Status validate_host_name(std::string_view name) {
  if (name.empty()) return Error{"is empty"};
  if (name.size() > kMaxHostName) return too_long(name.size(), kMaxHostName);
  std::size_t label = 1;
  std::size_t start = 0;
  while (start <= name.size()) {
    const std::size_t dot = name.find('.', start);
    const std::size_t end = dot == std::string_view::npos ? name.size() : dot;
    const std::string_view part = name.substr(start, end - start);
    const std::string where = "label " + std::to_string(label);
    if (part.empty()) return Error{"is not a DNS host name: " + where + " is empty"};
    if (part.size() > kMaxHostLabel) {
      return Error{"is not a DNS host name: " + where + " is " + std::to_string(part.size()) +
                   " characters, at most " + std::to_string(kMaxHostLabel)};
    }
    for (std::size_t i = 0; i < part.size(); ++i) {
      if (!is_alnum(part[i]) && part[i] != '-') {
        return Error{"is not a DNS host name: " + where + " has " + describe_byte(part[i])};
      }
    }
    if (part.front() == '-' || part.back() == '-') {
      return Error{"is not a DNS host name: " + where + " starts or ends with '-'"};
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
    ++label;
  }
  return ok_status();
}

Status validate_device_id(std::string_view id) {
  static constexpr std::string_view kSpecial = "-:.+%_#*?!(),=@;$'";
  if (id.empty()) return Error{"is empty"};
  if (id.size() > kMaxDeviceId) return too_long(id.size(), kMaxDeviceId);
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (!is_alnum(id[i]) && kSpecial.find(id[i]) == std::string_view::npos) {
      return bad_character(id[i], i);
    }
  }
  return ok_status();
}

Status validate_operation_id(std::string_view id) {
  // Opaque to us, but it goes back into a topic name: URL-safe characters only (the service's
  // ids are digits, hex and '.'/'-').
  if (id.size() > kMaxOperationId) return too_long(id.size(), kMaxOperationId);
  for (std::size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    if (!is_alnum(c) && c != '.' && c != '-' && c != '_' && c != '~') return bad_character(c, i);
  }
  return ok_status();
}

Status validate_substatus(std::string_view substatus) {
  if (substatus.size() > kMaxSubstatus) return too_long(substatus.size(), kMaxSubstatus);
  for (std::size_t i = 0; i < substatus.size(); ++i) {
    if (!is_alnum(substatus[i])) return bad_character(substatus[i], i);
  }
  return ok_status();
}

Status validate_rid(std::string_view rid) {
  if (rid.size() > kMaxRid) return too_long(rid.size(), kMaxRid);
  for (std::size_t i = 0; i < rid.size(); ++i) {
    if (!is_alnum(rid[i]) && rid[i] != '-') return bad_character(rid[i], i);
  }
  return ok_status();
}

}  // namespace dpsd::core
