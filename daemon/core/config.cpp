#include "core/config.hpp"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/config_merge.hpp"
#include "core/config_schema.hpp"
#include "core/duration.hpp"
#include "core/json_depth.hpp"

namespace dpsd::core {

namespace {

// The rules across keys, checked once every document is merged. A key whose own value was
// invalid is not compared again (its problem is already there).

void check_retry_order(ConfigMerger& merger) {
  const Config& config = merger.config();
  if (!merger.is_valid("retry.initial") || !merger.is_valid("retry.max") ||
      config.retry_initial <= config.retry_max) {
    return;
  }
  // The problem goes on the key that was written, in the file that wrote it.
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

// [provisioning.attestation] and [pkcs11].
void check_attestation(ConfigMerger& merger, const std::string& main_file, bool syntax_errors) {
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
void check_proxy(ConfigMerger& merger) {
  const Config& config = merger.config();
  if (config.proxy && (config.proxy->user || config.proxy->password) &&
      merger.was_set("proxy.url")) {
    const std::string& origin = merger.origin("proxy.url");
    if (!merger.is_private(origin)) {
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

const char* json_kind(const nlohmann::json& value) {
  if (value.is_array()) return "an array";
  if (value.is_string()) return "a string";
  if (value.is_boolean()) return "a boolean";
  if (value.is_number()) return "a number";
  if (value.is_null()) return "null";
  return "not an object";
}

}  // namespace

ConfigResult parse_config(const ConfigDocument& main, const std::vector<ConfigDocument>& drop_ins) {
  ConfigMerger merger;
  bool syntax_errors = !merger.apply(main);
  for (const auto& document : drop_ins) {
    if (!merger.apply(document)) syntax_errors = true;
  }

  // A missing key may well be in the document that failed to parse; saying it is required
  // would send the operator looking in the wrong place.
  if (!syntax_errors) {
    for (const auto& required : config_schema::required_keys()) {
      const std::string key(required.key);
      // An X.509 device has no symmetric key; check_attestation() asks for its own keys.
      if (merger.config().method == AttestationMethod::X509 &&
          key == "provisioning.attestation.symmetric_key") {
        continue;
      }
      if (!merger.was_set(key)) merger.problem(main.name, key, std::string(required.reason));
    }
  }
  check_retry_order(merger);
  check_attestation(merger, main.name, syntax_errors);
  check_proxy(merger);

  ConfigResult result;
  result.problems = std::move(merger.problems());
  if (result.problems.empty()) result.config = std::move(merger.config());
  return result;
}

Expected<std::string> validate_payload_json(std::string_view text) {
  JsonDepthCheck limit(kMaxPayloadDepth);
  if (!nlohmann::json::sax_parse(text.begin(), text.end(), &limit)) {
    if (limit.too_deep()) {
      return Error{Errc::TooLarge,
                   "is nested deeper than " + std::to_string(kMaxPayloadDepth) + " levels"};
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

}  // namespace dpsd::core
