#include "output.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <limits>
#include <ostream>

#include "core/text_sanitize.hpp"

namespace dpsctl {
namespace {

using dpsd::core::sanitize_text;

// dpsd's Reprovision policy (daemon/app/daemon.cpp), named in what we print when a call was
// deferred; the time itself always comes from dpsd.
constexpr const char* kReprovisionLimit = "Reprovision is limited to one every 10 s";

std::string format_time(std::uint64_t usec) {
  const std::time_t t = static_cast<std::time_t>(usec / 1000000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  (void)std::strftime(buf, sizeof buf, "%a %Y-%m-%d %H:%M:%S %Z", &tm);
  return buf;
}

// "12 s", "3 min 5 s", "2 h 4 min", "3 d 1 h": two units at most, like systemctl.
std::string span_words(std::uint64_t usec) {
  std::uint64_t s = usec / 1000000;
  if (s < 60) return std::to_string(s) + " s";
  if (s < 3600) return std::to_string(s / 60) + " min " + std::to_string(s % 60) + " s";
  if (s < 86400) return std::to_string(s / 3600) + " h " + std::to_string(s % 3600 / 60) + " min";
  return std::to_string(s / 86400) + " d " + std::to_string(s % 86400 / 3600) + " h";
}

std::uint64_t now_usec() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000 +
         static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
}

std::string relative(std::uint64_t usec) {
  const std::uint64_t now = now_usec();
  if (usec > now) return "in " + span_words(usec - now);
  return span_words(now - usec) + " ago";
}

// A property's string value, escaped once, "-" when empty.
std::string shown(const Properties& p, const char* name) {
  return or_dash(escape_once(as_string(p, name)));
}

}  // namespace

std::string escape_once(std::string_view text) {
  // The sanitizer's output, backslashes aside, is a fixed point of the sanitizer.
  std::string rest(text);
  rest.erase(std::remove(rest.begin(), rest.end(), '\\'), rest.end());
  if (sanitize_text(rest, std::numeric_limits<std::size_t>::max()) == rest) {
    return std::string(text);
  }
  return sanitize_text(text);
}

std::string escape_argument(std::string_view text) {
  return sanitize_text(text);
}

void print_line(std::ostream& out, const std::string& text) {
  out << escape_once(text) << "\n";
}

void print_human(std::ostream& out, const Properties& p) {
  const auto line = [&out](const char* label, const std::string& value) {
    char head[32];
    (void)std::snprintf(head, sizeof head, "%14s: ", label);
    out << head;
    print_line(out, value);
  };
  line("State", escape_once(as_string(p, "State")));
  line("Hub", shown(p, "AssignedHub"));
  line("Device", shown(p, "DeviceId"));
  line("Registration", shown(p, "RegistrationId") + " (scope " + shown(p, "IdScope") + ")");
  line("Substatus", shown(p, "Substatus"));
  line("Source", shown(p, "Source"));
  const std::uint64_t provisioned = as_u64(p, "ProvisionedUSec");
  line("Provisioned",
       provisioned ? format_time(provisioned) + " (" + relative(provisioned) + ")" : "never");
  const std::uint64_t last = as_u64(p, "LastAttemptUSec");
  line("Attempts", std::to_string(as_u64(p, "Attempts")) +
                       (last ? " (last " + relative(last) + ")" : std::string()));
  const std::uint64_t next = as_u64(p, "NextAttemptUSec");
  line("Next attempt", next ? relative(next) : "-");
  line("Last error", shown(p, "LastError"));
}

nlohmann::json to_json(const Properties& p) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, value] : p) {
    std::visit([&, n = name](const auto& v) { j[n] = v; }, value);
  }
  return j;
}

std::string describe_state(const Properties& p, bool present) {
  if (!present) return "dpsd is not running";
  std::string s = "State=" + escape_once(as_string(p, "State"));
  const std::string error = escape_once(as_string(p, "LastError"));
  if (!error.empty()) s += ", last error: " + error;
  return s;
}

std::string start_words(std::uint64_t start_usec) {
  const std::uint64_t now = now_usec();
  // Half a second of slack: the call itself takes a moment, and "in 0 s" helps nobody.
  if (start_usec <= now + 500000) return "re-provisioning now";
  const std::uint64_t in_sec = (start_usec - now + 500000) / 1000000;
  return "re-provisioning at " + format_time(start_usec) + " (in " + span_words(in_sec * 1000000) +
         ": " + kReprovisionLimit + ")";
}

std::string or_dash(const std::string& s) {
  return s.empty() ? "-" : s;
}

}  // namespace dpsctl
