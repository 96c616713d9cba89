#include "core/topics.hpp"

#include "core/sas_token.hpp"

namespace dpsd::core {
namespace {

// Any non-negative integer is a valid retry-after (RFC 9110 section 10.2.3 delay-seconds); a
// longer one than this saturates here, which keeps the caller's arithmetic (seconds to
// milliseconds) far from overflow. The caller clamps it to its own bounds: a huge value means
// "wait as long as you are willing to", never "ignore me".
constexpr std::int64_t kMaxRetryAfterS = 86400;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::optional<std::int64_t> parse_seconds(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::int64_t value = 0;
  for (const char c : text) {
    if (!is_digit(c)) return std::nullopt;
    // Saturating per digit, so the accumulator never gets near overflow however long the text
    // is (digits are still checked to the end: "99x" is not a number).
    if (value <= kMaxRetryAfterS) value = value * 10 + (c - '0');
  }
  return value > kMaxRetryAfterS ? kMaxRetryAfterS : value;
}

}  // namespace

std::string mqtt_username(std::string_view id_scope, std::string_view registration_id,
                          std::string_view dpsd_version) {
  std::string out(id_scope);
  out += "/registrations/";
  out += registration_id;
  out += "/api-version=";
  out += kApiVersion;
  // The version is encoded so that a '&' or '=' in it could never start a new property.
  out += "&ClientVersion=dpsd%2F";
  out += url_encode_lower(dpsd_version);
  return out;
}

// rid and operationId are percent-encoded (as the Python SDK does): both are no-ops for the
// values seen in practice (decimal rids, "<digit>.<hex>.<uuid>" ids), but an operationId from
// the network carrying '&', '#' or '+' could otherwise inject properties or make the PUBLISH
// topic invalid (wildcards are not allowed in topic names).
std::string register_topic(std::string_view rid) {
  return "$dps/registrations/PUT/iotdps-register/?$rid=" + url_encode_lower(rid);
}

std::string poll_topic(std::string_view rid, std::string_view operation_id) {
  return "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=" + url_encode_lower(rid) +
         "&operationId=" + url_encode_lower(operation_id);
}

std::optional<ResponseTopic> parse_response_topic(std::string_view topic) {
  if (!topic.starts_with(kResponsePrefix)) return std::nullopt;
  std::string_view rest = topic.substr(kResponsePrefix.size());
  // Exactly three digits then '/': "2000/" or "20/" is not a status; atol-style parsing of
  // "200abc" is how the C SDK misreads topics, and we do not copy it.
  if (rest.size() < 4 || !is_digit(rest[0]) || !is_digit(rest[1]) || !is_digit(rest[2]) ||
      rest[3] != '/') {
    return std::nullopt;
  }
  ResponseTopic result;
  result.status = (rest[0] - '0') * 100 + (rest[1] - '0') * 10 + (rest[2] - '0');
  rest.remove_prefix(4);
  if (rest.empty()) return result;  // no properties at all
  if (rest.front() != '?') return std::nullopt;
  rest.remove_prefix(1);

  bool rid_seen = false;
  bool rid_conflict = false;
  std::optional<std::string_view> retry_value;
  bool retry_conflict = false;
  while (!rest.empty()) {
    const std::size_t amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
    const std::size_t eq = pair.find('=');
    if (eq == std::string_view::npos) continue;  // garbage without a value: ignored
    const std::string_view key = pair.substr(0, eq);
    const std::string_view value = pair.substr(eq + 1);
    if (key == "$rid") {
      // A repeated property with a different value cannot be trusted either way, so the caller
      // sees it as absent (empty rid, malformed retry-after) instead of a guess.
      if (rid_seen && result.rid != value) rid_conflict = true;
      rid_seen = true;
      result.rid = std::string(value);
    } else if (iequals(key, "retry-after")) {  // the C# SDK matches this key case-insensitively
      if (retry_value && *retry_value != value) retry_conflict = true;
      retry_value = value;
    }
  }
  if (rid_conflict) result.rid.clear();
  if (retry_value) {
    result.retry_after_present = true;
    if (!retry_conflict) result.retry_after_s = parse_seconds(*retry_value);
  }
  return result;
}

}  // namespace dpsd::core
