#include "core/config.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>
#include <variant>

#include "core/json_depth.hpp"
#include "core/regular_file.hpp"

namespace dpsd::core {

namespace {

using std::chrono::milliseconds;
using Reason = std::optional<std::string>;  // nullopt: the value is fine

// ---------------------------------------------------------------------------------------------
// Value checks. Each returns the reason a value is wrong, phrased to follow "key: ".

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

std::string format_duration(milliseconds value) {
  static constexpr std::array<std::pair<std::int64_t, std::string_view>, 5> kUnits{{
      {86400000, "d"},
      {3600000, "h"},
      {60000, "min"},
      {1000, "s"},
      {1, "ms"},
  }};
  std::int64_t left = value.count();
  if (left == 0) return "0s";
  std::string out;
  for (const auto& [size, unit] : kUnits) {
    if (left >= size) {
      out += std::to_string(left / size);
      out += unit;
      left %= size;
    }
  }
  return out;
}

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

Reason check_port(std::string_view text, std::optional<std::uint16_t>& port) {
  if (text.empty() || text.size() > 5 ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return "port " + quoted(text) + " is not a number";
  }
  const int value = std::stoi(std::string(text));
  if (value < 1 || value > 65535) {
    return "port " + std::string(text) + " is out of range (1-65535)";
  }
  port = static_cast<std::uint16_t>(value);
  return std::nullopt;
}

// "host", "host:port", "[v6]" or "[v6]:port". The host is stored without brackets because it
// is what goes to the resolver, SNI and the certificate name check.
Reason check_endpoint(std::string_view text, std::string& host,
                      std::optional<std::uint16_t>& port) {
  static constexpr std::string_view kShape = "must be a host name or host:port";
  if (text.empty()) return "must not be empty";
  if (text.find("://") != std::string_view::npos) {
    return std::string(kShape) + ", not a URL (leave out the scheme)";
  }
  port.reset();
  std::string_view rest;
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return "has '[' but no ']'";
    const std::string_view address = text.substr(1, close - 1);
    if (address.empty() || !std::all_of(address.begin(), address.end(),
                                        [](char c) { return is_hex(c) || c == ':' || c == '.'; })) {
      return "has an invalid IPv6 address in brackets";
    }
    host = address;
    rest = text.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return std::string(kShape);
  } else {
    const auto colons = std::count(text.begin(), text.end(), ':');
    if (colons > 1) return "an IPv6 address must be in brackets, e.g. \"[2001:db8::1]:8883\"";
    const auto colon = text.find(':');
    const std::string_view name = text.substr(0, colon);
    if (name.empty() || !std::all_of(name.begin(), name.end(),
                                     [](char c) { return is_alnum(c) || c == '-' || c == '.'; })) {
      return std::string(kShape);
    }
    host = name;
    if (colon != std::string_view::npos) rest = text.substr(colon);
  }
  if (!rest.empty()) return check_port(rest.substr(1), port);
  return std::nullopt;
}

Reason check_id_scope(std::string_view text) {
  if (text.empty()) return "must not be empty";
  if (!std::all_of(text.begin(), text.end(), is_alnum)) {
    return "must contain only letters and digits (the ID Scope from the DPS overview page, e.g. "
           "\"0ne0012ABCD\")";
  }
  return std::nullopt;
}

// DPS's rule, as Microsoft documents it (learn.microsoft.com/azure/iot-dps/concepts-service,
// "Registration ID", and every enrollment how-to): "The registration ID is a case-insensitive
// string (up to 128 characters long) of alphanumeric characters plus the special characters:
// '-', '.', '_', ':'. The last character must be alphanumeric or dash ('-')." The document says
// nothing about the first character, so neither does this check: a leading '-' is accepted.
// Upper case is accepted too (the id is case-insensitive; the SDK samples use
// "myRegistrationId").
Reason check_registration_id(std::string_view text) {
  if (text.empty()) return "must not be empty";
  if (text.size() > 128) {
    return "is " + std::to_string(text.size()) + " characters long; DPS allows at most 128";
  }
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (!is_alnum(c) && c != '-' && c != '.' && c != '_' && c != ':') {
      const bool printable = c >= 0x21 && c <= 0x7e;
      const std::string shown =
          printable ? std::string("'") + c + "'" : std::string("a space or non-ASCII character");
      return "may contain only letters, digits and - . _ : (found " + shown + " at position " +
             std::to_string(i + 1) + ")";
    }
  }
  const char last = text.back();
  if (!is_alnum(last) && last != '-') {
    return std::string("must end with a letter, a digit or '-' (DPS's rule), not '") + last + "'";
  }
  return std::nullopt;
}

// Paths the daemon opens at run time must not depend on its working directory.
Reason check_absolute_path(std::string_view text) {
  if (text.find('\0') != std::string_view::npos) return "must not contain a NUL character";
  if (text.empty() || text.front() != '/') {
    return "must be an absolute path (got " + quoted(text) + ")";
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// The schema: every table and key the daemon knows, with how to apply a value to Config.

using Handler = Reason (*)(Config&, const toml::node&);

std::optional<std::string_view> string_of(const toml::node& node) {
  if (const auto* value = node.as_string()) return std::string_view(value->get());
  return std::nullopt;
}

constexpr std::string_view kMustBeString = "must be a string";

// A TOML integer counts seconds; a string goes through parse_duration().
std::variant<milliseconds, std::string> duration_of(const toml::node& node) {
  static const std::string kShape =
      "must be a duration: a number of seconds or a string such as \"250ms\", \"30s\", \"5min\", "
      "\"1h\"";
  if (const auto* integer = node.as_integer()) {
    const std::int64_t seconds = integer->get();
    if (seconds < 0) return std::string("must not be negative");
    if (seconds > std::numeric_limits<std::int64_t>::max() / 1000 / 1000) {
      return std::string("is too large");
    }
    return milliseconds(seconds * 1000);
  }
  if (const auto text = string_of(node)) {
    if (auto parsed = parse_duration(*text)) return *parsed;
    return kShape + " (got " + quoted(*text) + ")";
  }
  return kShape;
}

// Timeouts and retry delays of zero would spin or never wait; both are configuration mistakes.
Reason set_positive_duration(milliseconds& field, const toml::node& node) {
  auto value = duration_of(node);
  if (auto* reason = std::get_if<std::string>(&value)) return *reason;
  const auto ms = std::get<milliseconds>(value);
  if (ms.count() == 0) return "must be greater than zero";
  field = ms;
  return std::nullopt;
}

Reason set_path(std::filesystem::path& field, const toml::node& node) {
  const auto text = string_of(node);
  if (!text) return std::string(kMustBeString);
  if (auto reason = check_absolute_path(*text)) return reason;
  field = std::filesystem::path(*text);
  return std::nullopt;
}

// Optional paths: an empty string means "not set", so a drop-in can undo what the main file set.
Reason set_optional_path(std::optional<std::filesystem::path>& field, const toml::node& node) {
  const auto text = string_of(node);
  if (!text) return std::string(kMustBeString);
  if (text->empty()) {
    field.reset();
    return std::nullopt;
  }
  if (auto reason = check_absolute_path(*text)) return reason;
  field = std::filesystem::path(*text);
  return std::nullopt;
}

struct Leaf {
  std::string_view table;
  std::string_view name;
  Handler apply;
};

const std::array<std::string_view, 8> kTables{
    "provisioning", "provisioning.attestation", "tls", "network", "retry", "paths", "pkcs11",
    "proxy",
};

const std::array<Leaf, 29> kLeaves{{
    {"provisioning", "reprovision_on_start",
     [](Config& c, const toml::node& n) -> Reason {
       const auto text = string_of(n);
       if (!text) return std::string(kMustBeString);
       if (*text == "never") {
         c.reprovision_on_start = ReprovisionOnStart::Never;
       } else if (*text == "always") {
         c.reprovision_on_start = ReprovisionOnStart::Always;
       } else if (*text == "when-stale") {
         c.reprovision_on_start = ReprovisionOnStart::WhenStale;
       } else {
         return "must be \"never\", \"always\" or \"when-stale\" (got " + quoted(*text) + ")";
       }
       return std::nullopt;
     }},
    {"provisioning", "stale_after",
     [](Config& c, const toml::node& n) { return set_positive_duration(c.stale_after, n); }},
    {"provisioning", "global_endpoint",
     [](Config& c, const toml::node& n) -> Reason {
       const auto text = string_of(n);
       if (!text) return std::string(kMustBeString);
       return check_endpoint(*text, c.endpoint_host, c.endpoint_port);
     }},
    {"provisioning", "id_scope",
     [](Config& c, const toml::node& n) -> Reason {
       const auto text = string_of(n);
       if (!text) return std::string(kMustBeString);
       if (auto reason = check_id_scope(*text)) return reason;
       c.id_scope = *text;
       return std::nullopt;
     }},
    {"provisioning", "registration_id",
     [](Config& c, const toml::node& n) -> Reason {
       const auto text = string_of(n);
       if (!text) return std::string(kMustBeString);
       if (auto reason = check_registration_id(*text)) return reason;
       c.registration_id = *text;
       return std::nullopt;
     }},
    {"provisioning", "payload_file",
     [](Config& c, const toml::node& n) { return set_optional_path(c.payload_file, n); }},
    {"provisioning.attestation", "method",
     [](Config& c, const toml::node& n) -> Reason {
       const auto text = string_of(n);
       if (!text) return std::string(kMustBeString);
       if (*text == "symmetric_key") {
         c.method = AttestationMethod::SymmetricKey;
         return std::nullopt;
       }
       if (*text == "x509") {
         c.method = AttestationMethod::X509;
         return std::nullopt;
       }
       if (*text == "tpm") return quoted(*text) + " is not supported yet";
       return "must be \"symmetric_key\" or \"x509\" (got " + quoted(*text) + ")";
     }},
    {"provisioning.attestation", "enrollment",
     [](Config& c, const toml::node& n) -> Reason {
       const auto text = string_of(n);
       if (!text) return std::string(kMustBeString);
       if (*text == "individual") {
         c.enrollment = Enrollment::Individual;
       } else if (*text == "group") {
         c.enrollment = Enrollment::Group;
       } else {
         return "must be \"individual\" or \"group\" (got " + quoted(*text) + ")";
       }
       return std::nullopt;
     }},
    {"provisioning.attestation", "symmetric_key",
     [](Config& c, const toml::node& n) -> Reason {
       const auto text = string_of(n);
       if (!text) return std::string(kMustBeString);
       if (is_pkcs11_uri(*text)) {
         auto pkcs11 = parse_pkcs11_uri(*text);
         if (!pkcs11) return pkcs11.error();
         c.symmetric_key_uri = *text;
         return std::nullopt;
       }
       auto uri = parse_key_uri(*text);
       if (!uri) return uri.error();
       c.symmetric_key_uri = *text;
       return std::nullopt;
     }},
    {"provisioning.attestation", "sas_token_lifetime",
     [](Config& c, const toml::node& n) -> Reason {
       auto value = duration_of(n);
       if (auto* reason = std::get_if<std::string>(&value)) return *reason;
       const auto ms = std::get<milliseconds>(value);
       // Shorter than this and the token can expire while the TLS handshake and the
       // registration are still under way on a slow link.
       if (ms < std::chrono::minutes(1)) return "must be at least 1min";
       if (ms.count() % 1000 != 0) return "must be a whole number of seconds";
       c.sas_token_lifetime = std::chrono::duration_cast<std::chrono::seconds>(ms);
       return std::nullopt;
     }},
    {"tls", "trust_bundle",
     [](Config& c, const toml::node& n) { return set_optional_path(c.trust_bundle, n); }},
    {"network", "connect_timeout",
     [](Config& c, const toml::node& n) { return set_positive_duration(c.connect_timeout, n); }},
    {"network", "tls_handshake_timeout",
     [](Config& c, const toml::node& n) {
       return set_positive_duration(c.tls_handshake_timeout, n);
     }},
    {"network", "response_timeout",
     [](Config& c, const toml::node& n) { return set_positive_duration(c.response_timeout, n); }},
    {"retry", "initial",
     [](Config& c, const toml::node& n) { return set_positive_duration(c.retry_initial, n); }},
    {"retry", "max",
     [](Config& c, const toml::node& n) { return set_positive_duration(c.retry_max, n); }},
    {"retry", "refused",
     [](Config& c, const toml::node& n) { return set_positive_duration(c.retry_refused, n); }},
    {"provisioning.attestation", "identity_cert",
     [](Config& c, const toml::node& n) -> Reason {
       const auto text = string_of(n);
       if (!text) return std::string(kMustBeString);
       // A certificate is public, but a credential: or pkcs11: form would suggest otherwise;
       // one plain form keeps the check and the loader simple.
       auto uri = parse_key_uri(*text);
       if (!uri || uri->kind != KeyUri::Kind::File) {
         return std::string("must be file:///absolute/path.pem (the certificate, then its chain)");
       }
       c.identity_cert_uri = *text;
       return std::nullopt;
     }},
    {"provisioning.attestation", "identity_pk",
     [](Config& c, const toml::node& n) -> Reason {
       const auto text = string_of(n);
       if (!text) return std::string(kMustBeString);
       if (is_pkcs11_uri(*text)) {
         auto pkcs11 = parse_pkcs11_uri(*text);
         if (!pkcs11) return pkcs11.error();
       } else if (auto uri = parse_key_uri(*text); !uri) {
         return uri.error() + " or a pkcs11: URI";
       }
       c.identity_pk_uri = *text;
       return std::nullopt;
     }},
    {"pkcs11", "module",
     [](Config& c, const toml::node& n) { return set_optional_path(c.pkcs11_module, n); }},
    {"pkcs11", "pin_file",
     [](Config& c, const toml::node& n) { return set_optional_path(c.pkcs11_pin_file, n); }},
    {"pkcs11", "pin_credential",
     [](Config& c, const toml::node& n) -> Reason {
       const auto text = string_of(n);
       if (!text) return std::string(kMustBeString);
       if (text->empty()) {
         c.pkcs11_pin_credential.reset();
         return std::nullopt;
       }
       auto uri = parse_key_uri("credential:" + std::string(*text));
       if (!uri) return std::string("must be a plain credential name (no '/')");
       c.pkcs11_pin_credential = uri->value;
       return std::nullopt;
     }},
    // Known only to say why it is refused, instead of a bare "unknown key".
    {"pkcs11", "pin",
     [](Config&, const toml::node&) -> Reason {
       return std::string(
           "a PIN in clear in the configuration is refused (config files are world-readable); "
           "use pin_file = \"/etc/dpsd/keys/pin\" (mode 0600) or pin_credential = \"NAME\"");
     }},
    {"provisioning", "transport",
     [](Config& c, const toml::node& n) -> Reason {
       const auto text = string_of(n);
       if (!text) return std::string(kMustBeString);
       if (*text == "mqtt") {
         c.transport = Transport::Mqtt;
       } else if (*text == "mqtt-ws") {
         c.transport = Transport::MqttWs;
       } else if (*text == "auto") {
         c.transport = Transport::Auto;
       } else {
         return "must be \"mqtt\", \"mqtt-ws\" or \"auto\" (got " + quoted(*text) + ")";
       }
       return std::nullopt;
     }},
    {"provisioning", "websocket_port",
     [](Config& c, const toml::node& n) -> Reason {
       const auto* value = n.as_integer();
       if (value == nullptr || value->get() < 1 || value->get() > 65535) {
         return std::string("must be an integer port number (1-65535)");
       }
       c.websocket_port = static_cast<std::uint16_t>(value->get());
       return std::nullopt;
     }},
    {"proxy", "url",
     [](Config& c, const toml::node& n) -> Reason {
       const auto text = string_of(n);
       if (!text) return std::string(kMustBeString);
       c.proxy_configured = true;
       if (text->empty()) {  // direct, even when the environment names a proxy
         c.proxy.reset();
         return std::nullopt;
       }
       // The reason never quotes the URL: it may hold the proxy password.
       auto url = proxy::parse_proxy_url(*text);
       if (!url) return url.error();
       c.proxy = std::move(*url);
       return std::nullopt;
     }},
    // Where the proxy's user:password is: a file with a key file's rules, or a systemd
    // credential. Read by load_config(), which fills proxy->user/password from it.
    {"proxy", "credentials",
     [](Config& c, const toml::node& n) -> Reason {
       const auto text = string_of(n);
       if (!text) return std::string(kMustBeString);
       if (text->empty()) {
         c.proxy_credentials_uri.reset();
         return std::nullopt;
       }
       auto uri = parse_key_uri(*text);
       if (!uri) return uri.error();
       c.proxy_credentials_uri = std::string(*text);
       return std::nullopt;
     }},
    {"paths", "state_dir", [](Config& c, const toml::node& n) { return set_path(c.state_dir, n); }},
    {"paths", "runtime_dir",
     [](Config& c, const toml::node& n) { return set_path(c.runtime_dir, n); }},
}};

std::string dotted(std::string_view table, std::string_view name) {
  return table.empty() ? std::string(name) : std::string(table) + "." + std::string(name);
}

// The keys an operator must set, with what to put there: the shipped config leaves them
// commented out, so these are the lines --check-config prints on a fresh install.
struct Required {
  std::string_view key;
  std::string_view reason;
};
constexpr std::array<Required, 3> kRequired{{
    {"provisioning.id_scope",
     "is required: set it to the ID Scope of your DPS instance (Azure portal, the DPS "
     "resource's Overview page, e.g. \"0ne0012ABCD\")"},
    {"provisioning.registration_id",
     "is required: set it to this device's registration ID in the DPS enrollment (letters, "
     "digits and - . _ :, e.g. \"gateway-0042\")"},
    {"provisioning.attestation.symmetric_key",
     "is required: set it to where the device key is, \"file:///etc/dpsd/keys/device.key\" "
     "or \"credential:NAME\""},
}};

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

struct Name {
  std::string_view own;  // as written inside the table
  std::string shown;     // as a hint shows it: a key's name, or a table's "[header]"
};

// Names directly inside `table` ("" is the root): its keys and its sub-tables.
std::vector<Name> names_in(std::string_view table) {
  std::vector<Name> names;
  for (const auto& leaf : kLeaves) {
    if (leaf.table == table) names.push_back({leaf.name, std::string(leaf.name)});
  }
  for (std::string_view t : kTables) {
    const auto dot = t.rfind('.');
    const std::string_view parent = dot == std::string_view::npos ? "" : t.substr(0, dot);
    const std::string_view own = dot == std::string_view::npos ? t : t.substr(dot + 1);
    if (parent == table) names.push_back({own, "[" + std::string(t) + "]"});
  }
  return names;
}

// "unknown key", with the nearest known name: first in the same table, then anywhere else
// (a key put under the wrong table header is a common slip).
std::string unknown_key_reason(std::string_view table, std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  // Within 2 edits, and fewer edits than either name is long: "x" is not a typo of "max".
  constexpr std::size_t kMaxDistance = 2;
  std::size_t best = kMaxDistance + 1;
  std::string suggestion;
  for (const Name& candidate : names_in(table)) {
    const std::size_t d = edit_distance(lower, candidate.own);
    if (d < best && d < candidate.own.size() && d < lower.size()) {
      best = d;
      suggestion = candidate.shown;
    }
  }
  if (suggestion.empty()) {
    std::vector<std::string_view> tables(kTables.begin(), kTables.end());
    tables.insert(tables.begin(), "");
    for (std::string_view other : tables) {
      if (other == table) continue;
      for (const Name& candidate : names_in(other)) {
        const std::size_t d = edit_distance(lower, candidate.own);
        if (d < best && d < candidate.own.size() && d < lower.size()) {
          best = d;
          const bool is_table = candidate.shown.front() == '[';
          suggestion = is_table || other.empty()
                           ? candidate.shown
                           : candidate.shown + " in [" + std::string(other) + "]";
        }
      }
    }
  }
  if (suggestion.empty()) return "unknown key";
  return "unknown key (did you mean " + suggestion + "?)";
}

class Merger {
 public:
  void apply(const toml::table& root, const std::string& file) {
    file_ = &file;
    lines_.clear();
    const std::size_t first = problems_.size();
    walk(root, "");
    // toml++ iterates tables in key order; operators read problems in the order of the file.
    std::vector<std::size_t> order(problems_.size() - first);
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return lines_[a] < lines_[b]; });
    std::vector<ConfigProblem> sorted;
    sorted.reserve(order.size());
    for (std::size_t i : order) sorted.push_back(std::move(problems_[first + i]));
    std::move(sorted.begin(), sorted.end(), problems_.begin() + static_cast<std::ptrdiff_t>(first));
  }

  void problem(std::string file, std::string key, std::string reason) {
    problems_.push_back({std::move(file), std::move(key), std::move(reason)});
  }

  Config& config() { return config_; }
  std::vector<ConfigProblem>& problems() { return problems_; }
  bool was_set(const std::string& key) const { return origin_.count(key) != 0; }
  bool is_valid(const std::string& key) const { return invalid_.count(key) == 0; }
  const std::string& origin(const std::string& key) const { return origin_.at(key); }

 private:
  void walk(const toml::table& table, std::string_view path) {
    for (auto&& [key, node] : table) {
      const std::string name(key.str());
      const std::string full = dotted(path, name);
      if (std::find(kTables.begin(), kTables.end(), full) != kTables.end()) {
        if (const auto* sub = node.as_table()) {
          walk(*sub, full);
        } else {
          node_problem(node, full, "must be a table");
        }
        continue;
      }
      const auto leaf = std::find_if(kLeaves.begin(), kLeaves.end(), [&](const Leaf& l) {
        return l.table == path && l.name == name;
      });
      if (leaf == kLeaves.end()) {
        node_problem(node, full, unknown_key_reason(path, name));
        continue;
      }
      // Later documents override earlier ones key by key; the last one to set a key owns it.
      origin_[full] = *file_;
      if (auto reason = leaf->apply(config_, node)) {
        invalid_.insert(full);
        node_problem(node, full, std::move(*reason));
      } else {
        invalid_.erase(full);
      }
    }
  }

  void node_problem(const toml::node& node, std::string key, std::string reason) {
    const auto& begin = node.source().begin;
    lines_.push_back({begin.line, begin.column});
    problem(*file_, std::move(key), std::move(reason));
  }

  const std::string* file_ = nullptr;
  std::vector<std::pair<toml::source_index, toml::source_index>> lines_;  // of this document
  Config config_;
  std::vector<ConfigProblem> problems_;
  std::map<std::string, std::string> origin_;
  std::set<std::string> invalid_;
};

// ---------------------------------------------------------------------------------------------
// File reading for load_config(), all through core::open_regular_file (see regular_file.hpp).

// A config file is a few KiB; 1 MiB bounds a read of a wrong path such as a log file.
constexpr std::size_t kMaxConfigFileSize = std::size_t{1} << 20;
// payload_file goes into the register request as it is; 64 KiB keeps that request well inside
// the message sizes DPS works with (its replies are documented up to 96 KB) while being orders
// of magnitude above any real custom-allocation payload.
constexpr std::size_t kMaxPayloadFileSize = std::size_t{64} * 1024;
// "user:password" is a line; 64 KiB only bounds a wrong path.
constexpr std::size_t kMaxCredentialsFileSize = std::size_t{64} * 1024;

const char* json_kind(const nlohmann::json& value) {
  if (value.is_array()) return "an array";
  if (value.is_string()) return "a string";
  if (value.is_boolean()) return "a boolean";
  if (value.is_number()) return "a number";
  if (value.is_null()) return "null";
  return "not an object";
}

// "user:password" from [proxy] credentials, read with a key file's rules. The content is never
// echoed in a message.
Reason read_proxy_credentials(const std::string& uri, proxy::ProxyUrl& proxy) {
  auto parsed = parse_key_uri(uri);
  if (!parsed) return parsed.error();
  std::string path;
  std::string what;
  const bool is_file = parsed->kind == KeyUri::Kind::File;
  if (is_file) {
    path = parsed->value;
    what = "file " + path;
  } else {
    const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
    if (dir == nullptr || *dir == '\0') {
      return "credential '" + parsed->value +
             "' not found: $CREDENTIALS_DIRECTORY is not set (add LoadCredential= or "
             "SetCredential= to the service)";
    }
    path = std::string(dir) + "/" + parsed->value;
    what = "credential '" + parsed->value + "' (" + path + ")";
  }
  // Credentials live in a directory systemd made and manages; only plain files are checked
  // for symlinks and modes, as key files are.
  auto file = open_regular_file(path, what, !is_file);
  if (!file) return file.error();
  if (is_file) {
    if (auto problem = private_file_problem(file->st, what, path)) return problem;
  }
  std::string text;
  auto read = read_opened_file(*file, kMaxCredentialsFileSize, what, text);
  const auto wipe = [&text] { OPENSSL_cleanse(text.data(), text.size()); };
  if (!read) return read.error();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  const auto colon = text.find(':');
  if (colon == std::string::npos || colon == 0 || text.find('\n') != std::string::npos) {
    wipe();
    return what + " must hold one line, user:password";
  }
  proxy.user = text.substr(0, colon);
  proxy.password = text.substr(colon + 1);
  wipe();
  return std::nullopt;
}

}  // namespace

Expected<std::string> validate_payload_json(std::string_view text) {
  JsonDepthCheck limit(kMaxPayloadDepth);
  if (!nlohmann::json::sax_parse(text.begin(), text.end(), &limit)) {
    if (limit.too_deep()) {
      return Error{"is nested deeper than " + std::to_string(kMaxPayloadDepth) + " levels"};
    }
    // what() starts with "[json.exception.parse_error.101] "; the rest is the useful part.
    std::string message = limit.error_text();
    if (const auto end = message.find("] ");
        !message.empty() && message.front() == '[' && end != std::string::npos) {
      message.erase(0, end + 2);
    }
    return Error{"is not valid JSON: " + message};
  }
  // The SAX pass accepted it, so the DOM parse neither throws nor recurses past the limit.
  const auto value = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (value.is_discarded()) return Error{"is not valid JSON"};
  if (!value.is_object()) {
    return Error{std::string("must hold a JSON object, found ") + json_kind(value)};
  }
  return value.dump();
}

bool same_registration_id(std::string_view a, std::string_view b) {
  const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                            [&](char x, char y) { return lower(x) == lower(y); });
}

std::string ConfigProblem::to_string() const {
  if (key.empty()) return file + ": " + reason;
  return file + ": " + key + ": " + reason;
}

std::optional<milliseconds> parse_duration(std::string_view text) {
  static constexpr std::array<std::pair<std::string_view, std::int64_t>, 9> kUnits{{
      {"ms", 1},
      {"msec", 1},
      {"s", 1000},
      {"sec", 1000},
      {"m", 60000},
      {"min", 60000},
      {"h", 3600000},
      {"hr", 3600000},
      {"d", 86400000},
  }};
  // Far beyond any sensible delay, and keeps every sum below overflow.
  constexpr std::int64_t kLimit = std::int64_t{1} << 52;
  const auto is_space = [](char c) { return c == ' ' || c == '\t'; };
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  const auto is_letter = [](char c) { return c >= 'a' && c <= 'z'; };

  std::size_t i = 0;
  std::int64_t total = 0;
  int components = 0;
  bool bare_number = false;
  for (;;) {
    while (i < text.size() && is_space(text[i])) ++i;
    if (i == text.size()) break;
    if (!is_digit(text[i])) return std::nullopt;
    std::int64_t number = 0;
    while (i < text.size() && is_digit(text[i])) {
      number = number * 10 + (text[i] - '0');
      if (number > kLimit) return std::nullopt;
      ++i;
    }
    while (i < text.size() && is_space(text[i])) ++i;
    const std::size_t unit_start = i;
    while (i < text.size() && is_letter(text[i])) ++i;
    const std::string_view unit = text.substr(unit_start, i - unit_start);
    std::int64_t scale = 0;
    if (unit.empty()) {
      scale = 1000;  // a bare number counts seconds, like the TOML integer form
      bare_number = true;
    } else {
      for (const auto& [name, ms] : kUnits) {
        if (name == unit) scale = ms;
      }
      if (scale == 0) return std::nullopt;
    }
    if (number > kLimit / scale) return std::nullopt;
    total += number * scale;
    if (total > kLimit) return std::nullopt;
    ++components;
  }
  // "1h 30" is ambiguous: a unitless number is only allowed on its own.
  if (components == 0 || (bare_number && components > 1)) return std::nullopt;
  return milliseconds(total);
}

Expected<KeyUri> parse_key_uri(std::string_view uri) {
  constexpr std::string_view kUse = "(use file:///path or credential:NAME)";
  constexpr std::string_view kFile = "file://";
  constexpr std::string_view kCredential = "credential:";
  if (uri.substr(0, kFile.size()) == kFile) {
    const std::string_view path = uri.substr(kFile.size());
    if (path.empty() || path.front() != '/') {
      return Error{"file URI must be file:///absolute/path (a host part is not supported)"};
    }
    if (path.size() == 1) return Error{"file URI must name a file"};
    if (path.find('\0') != std::string_view::npos) {
      return Error{"file URI must not contain a NUL character"};
    }
    return KeyUri{KeyUri::Kind::File, std::string(path)};
  }
  if (uri.substr(0, kCredential.size()) == kCredential) {
    const std::string_view name = uri.substr(kCredential.size());
    if (name.empty() || name == "." || name == ".." ||
        name.find_first_of(std::string_view("/\0", 2)) != std::string_view::npos) {
      return Error{"credential:NAME needs a plain credential name (no '/')"};
    }
    return KeyUri{KeyUri::Kind::Credential, std::string(name)};
  }
  // Only the scheme is echoed: the rest might be the key itself, pasted in by mistake.
  const auto colon = uri.find(':');
  const std::string_view scheme = colon == std::string_view::npos ? "" : uri.substr(0, colon);
  const bool plausible_scheme =
      !scheme.empty() && scheme.size() <= 16 &&
      std::all_of(scheme.begin(), scheme.end(), [](char c) { return is_alnum(c) || c == '+'; });
  if (!plausible_scheme) {
    return Error{"must be a URI that says where the key is, not the key itself " +
                 std::string(kUse)};
  }
  if (scheme == "pkcs11") return Error{"pkcs11: keys are not supported yet " + std::string(kUse)};
  return Error{"unsupported URI scheme '" + std::string(scheme) + "' " + std::string(kUse)};
}

bool is_pkcs11_uri(std::string_view uri) {
  return uri.substr(0, 7) == "pkcs11:";
}

Expected<Pkcs11Uri> parse_pkcs11_uri(std::string_view uri) {
  if (!is_pkcs11_uri(uri)) return Error{"must start with pkcs11:"};
  // Checked before anything else, on the whole text, so no later message can quote the PIN.
  std::string lower(uri);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower.find("pin-value") != std::string::npos ||
      lower.find("pin-source") != std::string::npos) {
    return Error{
        "a PIN in the pkcs11: URI is refused (config files are world-readable); remove "
        "pin-value/pin-source and set [pkcs11] pin_file or pin_credential"};
  }
  static constexpr std::array<std::string_view, 13> kPathAttributes{"token",
                                                                    "object",
                                                                    "id",
                                                                    "type",
                                                                    "manufacturer",
                                                                    "model",
                                                                    "serial",
                                                                    "library-manufacturer",
                                                                    "library-description",
                                                                    "library-version",
                                                                    "slot-id",
                                                                    "slot-description",
                                                                    "slot-manufacturer"};
  Pkcs11Uri out;
  out.text = std::string(uri);
  std::string_view rest = uri.substr(7);
  if (const auto question = rest.find('?'); question != std::string_view::npos) {
    // module-name/module-path would compete with [pkcs11] module; nothing else is meant for us.
    return Error{
        "pkcs11: URI query attributes (after '?') are not used; set the module in "
        "[pkcs11] module"};
  }
  while (!rest.empty()) {
    const auto semicolon = rest.find(';');
    const std::string_view part = rest.substr(0, semicolon);
    rest = semicolon == std::string_view::npos ? std::string_view{} : rest.substr(semicolon + 1);
    if (part.empty()) continue;
    const auto eq = part.find('=');
    if (eq == std::string_view::npos) {
      return Error{"pkcs11: URI attribute \"" + std::string(part) + "\" has no '='"};
    }
    const std::string name(part.substr(0, eq));
    if (std::find(kPathAttributes.begin(), kPathAttributes.end(), name) == kPathAttributes.end()) {
      return Error{"pkcs11: URI has unknown attribute \"" + name + "\" (RFC 7512)"};
    }
    std::string value;
    const std::string_view raw = part.substr(eq + 1);
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '%') {
        value += raw[i];
        continue;
      }
      if (i + 2 >= raw.size() || !is_hex(raw[i + 1]) || !is_hex(raw[i + 2])) {
        return Error{"pkcs11: URI attribute \"" + name + "\" has a bad %-escape"};
      }
      value += static_cast<char>(std::stoi(std::string(raw.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    }
    if (!out.path.emplace(name, std::move(value)).second) {
      return Error{"pkcs11: URI has attribute \"" + name + "\" twice"};
    }
  }
  if (out.path.count("object") == 0 && out.path.count("id") == 0) {
    return Error{"pkcs11: URI must name the key with object=LABEL or id=%01…"};
  }
  return out;
}

namespace {

// Cross-key rules of [provisioning.attestation] and [pkcs11], after every document is merged.
void check_attestation(Merger& merger, const std::string& main_file, bool syntax_errors) {
  const Config& config = merger.config();
  const auto where = [&](const std::string& key) {
    return merger.was_set(key) ? merger.origin(key) : main_file;
  };
  const bool x509 = config.method == AttestationMethod::X509;
  if (x509 && !syntax_errors) {
    if (!merger.was_set("provisioning.attestation.identity_cert")) {
      merger.problem(main_file, "provisioning.attestation.identity_cert",
                     "is required with method \"x509\": set it to the device certificate and its "
                     "chain, \"file:///etc/dpsd/keys/device.pem\"");
    }
    if (!merger.was_set("provisioning.attestation.identity_pk")) {
      merger.problem(main_file, "provisioning.attestation.identity_pk",
                     "is required with method \"x509\": set it to the certificate's private key, "
                     "\"file:///etc/dpsd/keys/device.key\", \"credential:NAME\" or a pkcs11: URI");
    }
  }
  const bool pkcs11_key =
      x509 ? is_pkcs11_uri(config.identity_pk_uri) : is_pkcs11_uri(config.symmetric_key_uri);
  const std::string key_name =
      x509 ? "provisioning.attestation.identity_pk" : "provisioning.attestation.symmetric_key";
  if (pkcs11_key && !config.pkcs11_module) {
    merger.problem(where(key_name), "pkcs11.module",
                   "is required for a pkcs11: key: the PKCS#11 module to load, e.g. "
                   "\"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so\"");
  }
  if (config.pkcs11_pin_file && config.pkcs11_pin_credential) {
    merger.problem(where("pkcs11.pin_credential"), "pkcs11.pin_credential",
                   "set either pin_file or pin_credential, not both");
  }
  // The group-derived device key is HMAC(group key, registration id): computing it in the token
  // would bring it out into dpsd's memory (PKCS#11 has no HMAC-to-key derivation that SoftHSM or
  // common tokens implement), which defeats keeping the key in the token. So the device key is
  // derived once at manufacturing and stored in the token as an individual key instead.
  if (!x509 && pkcs11_key && config.enrollment == Enrollment::Group) {
    merger.problem(where("provisioning.attestation.enrollment"),
                   "provisioning.attestation.enrollment",
                   "\"group\" cannot be used with a pkcs11: symmetric_key (deriving the device key "
                   "would bring it out of the token); store the derived device key, "
                   "base64(HMAC-SHA256(group key, registration_id)), in the token and use "
                   "enrollment = \"individual\"");
  }
}

// A proxy password must not sit where every local account can read it, for the same reason a
// PIN in the config is refused: config files are world-readable (0644) by design.
void check_proxy(Merger& merger, const std::vector<ConfigDocument>& documents) {
  const Config& config = merger.config();
  if (config.proxy && (config.proxy->user || config.proxy->password) &&
      merger.was_set("proxy.url")) {
    const std::string& origin = merger.origin("proxy.url");
    const auto document = std::find_if(documents.begin(), documents.end(),
                                       [&](const ConfigDocument& d) { return d.name == origin; });
    if (document == documents.end() || !document->private_file) {
      merger.problem(origin, "proxy.url",
                     "credentials in a URL need a config file readable only by its owner (mode "
                     "0600, or 0640 with group dpsd); or use [proxy] credentials = "
                     "\"file:///…\" or \"credential:NAME\"");
    }
  }
  if (config.proxy_credentials_uri && merger.is_valid("proxy.credentials")) {
    const std::string& origin = merger.origin("proxy.credentials");
    if (!config.proxy) {
      merger.problem(origin, "proxy.credentials",
                     "needs [proxy] url (the proxy the credentials are for)");
    } else if (config.proxy->user || config.proxy->password) {
      merger.problem(origin, "proxy.credentials",
                     "set the proxy user and password either in url or in credentials, not both");
    }
  }
}

}  // namespace

ConfigResult parse_config(const std::vector<ConfigDocument>& documents) {
  Merger merger;
  bool syntax_errors = false;
  for (const auto& document : documents) {
    try {
      const toml::table root = toml::parse(document.text, document.name);
      merger.apply(root, document.name);
    } catch (const toml::parse_error& e) {
      // The whole document is skipped: toml++ yields nothing usable from a broken file.
      syntax_errors = true;
      const auto& begin = e.source().begin;
      merger.problem(document.name, "",
                     "syntax error at line " + std::to_string(begin.line) + ", column " +
                         std::to_string(begin.column) + ": " + std::string(e.description()));
    }
  }

  // A missing key may well be in the document that failed to parse; saying it is required
  // would send the operator looking in the wrong place.
  const std::string main_file = documents.empty() ? "(no configuration)" : documents.front().name;
  if (!syntax_errors) {
    for (const auto& required : kRequired) {
      const std::string key(required.key);
      // An X.509 device has no symmetric key; check_attestation() asks for its own keys.
      if (merger.config().method == AttestationMethod::X509 &&
          key == "provisioning.attestation.symmetric_key") {
        continue;
      }
      if (!merger.was_set(key)) merger.problem(main_file, key, std::string(required.reason));
    }
  }

  Config& config = merger.config();
  if (merger.is_valid("retry.initial") && merger.is_valid("retry.max") &&
      config.retry_initial > config.retry_max) {
    if (merger.was_set("retry.initial")) {
      merger.problem(
          merger.origin("retry.initial"), "retry.initial",
          "must not be greater than retry.max (" + format_duration(config.retry_max) + ")");
    } else {
      merger.problem(
          merger.origin("retry.max"), "retry.max",
          "must not be less than retry.initial (" + format_duration(config.retry_initial) + ")");
    }
  }

  check_attestation(merger, main_file, syntax_errors);
  check_proxy(merger, documents);

  ConfigResult result;
  result.problems = std::move(merger.problems());
  if (result.problems.empty()) result.config = std::move(config);
  return result;
}

ConfigResult load_config(const std::filesystem::path& main_file) {
  std::vector<ConfigDocument> documents;
  std::vector<ConfigProblem> read_problems;
  // Reads one config file into `document`: true when read. A problem names the file, its
  // reason what is wrong with it; a missing file is left to the caller when missing_ok.
  const auto read_document = [&read_problems](ConfigDocument& document, bool missing_ok,
                                              bool* missing) {
    int open_errno = 0;
    auto file = open_regular_file(document.name, "", false, &open_errno);
    if (missing != nullptr) *missing = !file && open_errno == ENOENT;
    if (!file) {
      if (!(missing_ok && open_errno == ENOENT)) {
        read_problems.push_back({document.name, "", file.error()});
      }
      return false;
    }
    document.private_file = !private_file_problem(file->st, document.name, document.name);
    if (auto read = read_opened_file(*file, kMaxConfigFileSize, "", document.text); !read) {
      read_problems.push_back({document.name, "", read.error()});
      return false;
    }
    return true;
  };

  // A missing main file stands in as an empty document, so required keys are still reported
  // against it (it is where an operator would add them). Whether its absence is itself a
  // problem is decided after parsing: only if the drop-ins did not supply the required keys.
  ConfigDocument main{main_file.string(), ""};
  bool main_missing = false;
  read_document(main, true, &main_missing);
  documents.push_back(std::move(main));

  const std::filesystem::path dropin_dir = main_file.parent_path() / "config.d";
  std::error_code ec;
  std::vector<std::filesystem::path> dropins;
  std::filesystem::directory_iterator it(dropin_dir, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    read_problems.push_back({dropin_dir.string(), "", "cannot read: " + ec.message()});
  }
  for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const auto name = it->path().filename().string();
    // Dot files are editor locks and temporaries (".#x.toml"), never real drop-ins.
    if (it->path().extension() != ".toml" || name.front() == '.') continue;
    dropins.push_back(it->path());
  }
  std::sort(dropins.begin(), dropins.end(), [](const auto& a, const auto& b) {
    return a.filename().string() < b.filename().string();
  });
  for (const auto& path : dropins) {
    // A directory, FIFO or symlink named *.toml is reported, not skipped: an operator who put
    // it there meant it as a drop-in and must learn why it is not one.
    ConfigDocument document{path.string(), ""};
    if (read_document(document, false, nullptr)) documents.push_back(std::move(document));
  }

  ConfigResult result = parse_config(documents);
  if (!read_problems.empty()) {
    // As with a syntax error: the "missing" keys may be in the file that could not be read.
    std::erase_if(result.problems,
                  [](const ConfigProblem& p) { return p.reason.rfind("is required", 0) == 0; });
  }
  if (main_missing) {
    const bool lacks_required =
        std::any_of(result.problems.begin(), result.problems.end(), [&](const ConfigProblem& p) {
          return p.file == documents.front().name && p.reason.rfind("is required", 0) == 0;
        });
    if (lacks_required) {
      read_problems.insert(read_problems.begin(),
                           {documents.front().name, "", "cannot open: No such file or directory"});
    }
  }
  result.problems.insert(result.problems.begin(), read_problems.begin(), read_problems.end());

  if (result.problems.empty() && result.config && result.config->payload_file) {
    const std::string path = result.config->payload_file->string();
    const std::string key = "provisioning.payload_file";
    auto text = read_regular_file(path, kMaxPayloadFileSize, "");
    if (!text) {
      result.problems.push_back({path, key, text.error()});
    } else if (auto json = validate_payload_json(*text); !json) {
      result.problems.push_back({path, key, json.error()});
    } else {
      result.config->payload_json = std::move(*json);
    }
  }
  if (result.problems.empty() && result.config && result.config->proxy_credentials_uri) {
    if (auto reason =
            read_proxy_credentials(*result.config->proxy_credentials_uri, *result.config->proxy)) {
      result.problems.push_back({documents.front().name, "proxy.credentials", *reason});
    }
  }
  if (result.problems.empty() && result.config && result.config->trust_bundle) {
    // Only opened here, not read: OpenSSL reads it when the TLS context is made. A symlink is
    // fine (distributions link their bundle), a FIFO or directory is not: OpenSSL's fopen() of a
    // FIFO would block the daemon.
    const std::string path = result.config->trust_bundle->string();
    if (auto file = open_regular_file(path, "", true); !file) {
      result.problems.push_back({path, "tls.trust_bundle", file.error()});
    }
  }
  if (!result.problems.empty()) result.config.reset();
  return result;
}

}  // namespace dpsd::core
