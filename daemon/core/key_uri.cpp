#include "core/key_uri.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>
#include <utility>

namespace dpsd::core {

namespace {

bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

Error invalid(std::string message) {
  return Error{Errc::Invalid, std::move(message)};
}

}  // namespace

Expected<KeyUri> parse_key_uri(std::string_view uri) {
  constexpr std::string_view kUse = "(use file:///path or credential:NAME)";
  constexpr std::string_view kFile = "file://";
  constexpr std::string_view kCredential = "credential:";
  if (uri.substr(0, kFile.size()) == kFile) {
    const std::string_view path = uri.substr(kFile.size());
    if (path.empty() || path.front() != '/') {
      return invalid("file URI must be file:///absolute/path (a host part is not supported)");
    }
    if (path.size() == 1) return invalid("file URI must name a file");
    if (path.find('\0') != std::string_view::npos) {
      return invalid("file URI must not contain a NUL character");
    }
    return KeyUri{KeyUri::Kind::File, std::string(path)};
  }
  if (uri.substr(0, kCredential.size()) == kCredential) {
    const std::string_view name = uri.substr(kCredential.size());
    if (name.empty() || name == "." || name == ".." ||
        name.find_first_of(std::string_view("/\0", 2)) != std::string_view::npos) {
      return invalid("credential:NAME needs a plain credential name (no '/')");
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
    return invalid("must be a URI that says where the key is, not the key itself " +
                   std::string(kUse));
  }
  if (scheme == "pkcs11") return invalid("pkcs11: keys are not supported yet " + std::string(kUse));
  return invalid("unsupported URI scheme '" + std::string(scheme) + "' " + std::string(kUse));
}

bool is_pkcs11_uri(std::string_view uri) {
  return uri.substr(0, 7) == "pkcs11:";
}

Expected<Pkcs11Uri> parse_pkcs11_uri(std::string_view uri) {
  if (!is_pkcs11_uri(uri)) return invalid("must start with pkcs11:");
  // Checked before anything else, on the whole text, so no later message can quote the PIN.
  std::string lower(uri);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower.find("pin-value") != std::string::npos ||
      lower.find("pin-source") != std::string::npos) {
    return invalid(
        "a PIN in the pkcs11: URI is refused (config files are world-readable); remove "
        "pin-value/pin-source and set [pkcs11] pin_file or pin_credential");
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
    return invalid(
        "pkcs11: URI query attributes (after '?') are not used; set the module in "
        "[pkcs11] module");
  }
  while (!rest.empty()) {
    const auto semicolon = rest.find(';');
    const std::string_view part = rest.substr(0, semicolon);
    rest = semicolon == std::string_view::npos ? std::string_view{} : rest.substr(semicolon + 1);
    if (part.empty()) continue;
    const auto eq = part.find('=');
    if (eq == std::string_view::npos) {
      return invalid("pkcs11: URI attribute \"" + std::string(part) + "\" has no '='");
    }
    const std::string name(part.substr(0, eq));
    if (std::find(kPathAttributes.begin(), kPathAttributes.end(), name) == kPathAttributes.end()) {
      return invalid("pkcs11: URI has unknown attribute \"" + name + "\" (RFC 7512)");
    }
    std::string value;
    const std::string_view raw = part.substr(eq + 1);
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '%') {
        value += raw[i];
        continue;
      }
      if (i + 2 >= raw.size() || !is_hex(raw[i + 1]) || !is_hex(raw[i + 2])) {
        return invalid("pkcs11: URI attribute \"" + name + "\" has a bad %-escape");
      }
      value += static_cast<char>(std::stoi(std::string(raw.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    }
    if (!out.path.emplace(name, std::move(value)).second) {
      return invalid("pkcs11: URI has attribute \"" + name + "\" twice");
    }
  }
  if (out.path.count("object") == 0 && out.path.count("id") == 0) {
    return invalid("pkcs11: URI must name the key with object=LABEL or id=%01…");
  }
  return out;
}

}  // namespace dpsd::core
