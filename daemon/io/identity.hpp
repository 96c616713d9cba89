#pragma once
// The device's X.509 identity for DPS X.509 attestation: the client certificate with its chain
// (a PEM file, leaf first) and its private key from a file, a systemd credential or a PKCS#11
// token (through libengine-pkcs11-openssl: bookworm has no pkcs11-provider). DPS takes the leaf's
// subject CN as the registration ID, so the loader exposes it for --check-config, and notAfter
// for the expiry warning and D-Bus.
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.hpp"
#include "core/expected.hpp"
#include "io/c_ptr.hpp"
#include "io/key_source.hpp"

// ENGINE is an opaque OpenSSL type; declared here so this header does not pull in the
// deprecated <openssl/engine.h> (and its warnings) into every user.
struct engine_st;

namespace dpsd::io {

using X509Ptr = CPtr<X509, X509_free>;
using EvpPkeyPtr = CPtr<EVP_PKEY, EVP_PKEY_free>;
// ENGINE_finish (the functional reference from ENGINE_init) then ENGINE_free.
struct EngineDeleter {
  void operator()(engine_st* engine) const;
};
using EnginePtr = std::unique_ptr<engine_st, EngineDeleter>;

// Where the PKCS#11 module and its user PIN are ([pkcs11] in the config).
struct Pkcs11Settings {
  std::filesystem::path module;
  std::optional<std::filesystem::path> pin_file;  // private file (core::private_file_problem)
  std::optional<std::string> pin_credential;      // $CREDENTIALS_DIRECTORY/NAME
};
// nullopt when the config names no module.
std::optional<Pkcs11Settings> pkcs11_settings(const core::Config& config);

// Reads a small secret (a PEM key, a PIN) from "file:///abs/path" or "credential:NAME" with the
// same rules as key_source.cpp: files are opened with O_NOFOLLOW|O_NONBLOCK, must be regular
// files, and are refused when others have any access bit or the group may write or is not one dpsd
// runs with (core::private_file_problem); credentials are not mode-checked (systemd owns them).
// `what` names the setting in messages ("identity_pk"); the content is never echoed.
Expected<SecretText> read_secret(std::string_view uri, std::string_view what);
// The user PIN, without a trailing newline; an empty SecretText when no PIN is configured.
Expected<SecretText> load_pin(const Pkcs11Settings& settings);

class Identity {
 public:
  X509* certificate() const { return chain_.front().get(); }
  // Intermediates after the leaf, in file order (what the server needs to build the path).
  std::vector<X509*> chain() const;
  EVP_PKEY* private_key() const { return key_.get(); }
  const std::string& subject_cn() const { return subject_cn_; }
  std::chrono::system_clock::time_point not_after() const { return not_after_; }
  bool key_in_token() const { return static_cast<bool>(engine_); }
  // "sha256:<hex>" of the leaf's DER: the state fingerprint's key tag for X.509, so a renewed
  // certificate re-provisions. Public data, unlike a symmetric key's tag.
  std::string certificate_sha256() const;

 private:
  friend Expected<Identity> load_identity(std::string_view, std::string_view,
                                          const std::optional<Pkcs11Settings>&);
  // Declared first so it is destroyed last: an engine key needs its engine to be freed.
  EnginePtr engine_;
  std::vector<X509Ptr> chain_;  // never empty
  EvpPkeyPtr key_;
  std::string subject_cn_;
  std::chrono::system_clock::time_point not_after_{};
};

// Loads the certificate chain (cert_uri: file:///…pem) and the private key (key_uri: file:,
// credential: or pkcs11:; pkcs11 must be set for the last), and checks that the key belongs to
// the leaf certificate. Errors start with the setting's name ("identity_cert: …").
Expected<Identity> load_identity(std::string_view cert_uri, std::string_view key_uri,
                                 const std::optional<Pkcs11Settings>& pkcs11);
// From config.identity_cert_uri, identity_pk_uri and [pkcs11].
Expected<Identity> load_identity(const core::Config& config);

// For --check-config with method "x509": loads the identity as the daemon would, and checks
// that its subject CN equals provisioning.registration_id ignoring ASCII case
// (core::same_registration_id: DPS uses the CN as the registration ID, and registration IDs are
// case-insensitive, so any other value is refused by the service with a less helpful message).
Status check_identity(const core::Config& config);

// A log line when the certificate expires within `warn_before` of `now` (or has expired);
// nullopt otherwise.
std::optional<std::string> expiry_warning(const Identity& identity,
                                          std::chrono::system_clock::time_point now,
                                          std::chrono::hours warn_before = std::chrono::hours(24 *
                                                                                              30));

}  // namespace dpsd::io
