#include "app/identity_loader.hpp"

#include <chrono>
#include <ctime>

#include "core/base64.hpp"
#include "core/message_ids.hpp"
#include "core/state_record.hpp"
#include "io/log.hpp"
#include "io/pkcs11_signer.hpp"
#include "io/private_dir.hpp"

namespace dpsd::app {

namespace {

// A tag that changes when the key changes but reveals nothing about it: HMAC of a fixed label
// under the device key, truncated. Lets a rotated key re-provision (fingerprint input).
std::string key_tag(const core::Signer& signer) {
  auto mac = signer("dpsd fingerprint key tag v1");
  if (!mac) return {};
  mac.value().resize(16);
  return core::base64_encode(mac.value());
}

// file: or credential:, derived for group enrollments; the key text stays in SecretTexts.
Expected<PreparedIdentity> load_symmetric_key(const core::Config& config) {
  auto key = io::load_key(config.symmetric_key_uri);
  if (!key) return key.failure().within("symmetric_key");
  io::SecretText device_key(std::string(key->view()));
  if (config.enrollment == core::Enrollment::Group) {
    auto derived = core::derive_device_key(key->view(), config.registration_id);
    if (!derived) return derived.failure().within("symmetric_key: cannot derive the device key");
    device_key = io::SecretText(std::move(derived.value()));
  }
  auto signer = core::make_memory_signer(device_key.view());
  if (!signer) return signer.failure().within("symmetric_key");
  PreparedIdentity prepared;
  prepared.signer = std::move(signer.value());
  prepared.device_key = std::move(device_key);
  return prepared;
}

// The key never leaves the token: GetConnectionInfo cannot hand it out either.
Expected<PreparedIdentity> load_token_key(const core::Config& config) {
  const auto settings = io::pkcs11_settings(config);
  if (!settings) {
    return Error{Errc::Invalid, "symmetric_key: a pkcs11: key needs [pkcs11] module"};
  }
  auto signer = io::make_pkcs11_signer(config.symmetric_key_uri, *settings);
  if (!signer) return signer.failure().within("symmetric_key");
  PreparedIdentity prepared;
  prepared.signer = std::move(signer.value());
  return prepared;
}

Expected<PreparedIdentity> load_certificate(const core::Config& config) {
  auto identity = io::load_identity(config);
  if (!identity) return identity.failure();
  // Registration ids are case-insensitive to DPS, and so is its CN check.
  if (!core::same_registration_id(identity->subject_cn(), config.registration_id)) {
    return Error{Errc::Invalid, "identity_cert: the certificate's subject CN '" +
                                    identity->subject_cn() + "' is not the registration id '" +
                                    config.registration_id + "'"};
  }
  if (auto warning = io::expiry_warning(*identity, std::chrono::system_clock::now())) {
    io::log(core::LogLevel::Warning, core::kMessageCertificateExpiring, *warning);
  }
  PreparedIdentity prepared;
  prepared.certificate_not_after_usec =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                     identity->not_after().time_since_epoch())
                                     .count());
  prepared.x509 = std::make_unique<io::Identity>(std::move(identity.value()));
  return prepared;
}

}  // namespace

IdentityNames identity_names(const core::Config& config) {
  const bool x509 = config.method == core::AttestationMethod::X509;
  IdentityNames names;
  names.attestation = x509 ? "x509" : "symmetric_key";
  names.enrollment = config.enrollment == core::Enrollment::Group ? "group" : "individual";
  names.key_uri = x509 ? config.identity_pk_uri : config.symmetric_key_uri;
  names.endpoint = config.endpoint_host + ":" + std::to_string(config.port());
  return names;
}

Expected<PreparedIdentity> prepare_identity(const core::Config& config) {
  Expected<PreparedIdentity> loaded =
      config.method == core::AttestationMethod::X509  ? load_certificate(config)
      : core::is_pkcs11_uri(config.symmetric_key_uri) ? load_token_key(config)
                                                      : load_symmetric_key(config);
  if (!loaded) return loaded;
  PreparedIdentity& prepared = loaded.value();
  prepared.names = identity_names(config);

  // The certificate is public: its hash is the fingerprint's key tag, so a renewed certificate
  // re-provisions. A symmetric key's tag is an HMAC under it.
  core::FingerprintInputs inputs;
  inputs.id_scope = config.id_scope;
  inputs.registration_id = config.registration_id;
  inputs.endpoint = prepared.names.endpoint;
  inputs.attestation = prepared.names.attestation;
  inputs.enrollment = prepared.names.enrollment;
  inputs.key_uri = prepared.names.key_uri;
  inputs.key_tag = prepared.x509 ? prepared.x509->certificate_sha256() : key_tag(prepared.signer);
  prepared.fingerprint = core::compute_fingerprint(inputs);

  auto tls = io::make_client_tls_context(config.trust_bundle);
  if (!tls) return tls.failure().within("tls");
  prepared.tls = std::move(tls.value());
  if (prepared.x509) {
    if (auto status = io::use_client_identity(prepared.tls.get(), *prepared.x509); !status) {
      return status.failure().within("tls");
    }
  }
  // The relay socket lives in a directory only we can enter, created without following links.
  if (auto status = io::make_private_dir(config.runtime_dir / "private"); !status) {
    return status.failure().within("paths.runtime_dir");
  }
  return loaded;
}

core::Assignment assignment_record(const core::Config& config, const PreparedIdentity& identity,
                                   const core::RegistrationState& state,
                                   core::Transport transport) {
  core::Assignment assignment;
  assignment.status = "assigned";
  assignment.assigned_hub = state.assigned_hub;
  assignment.device_id = state.device_id;
  // Ours, not the reply's: the reply's copy is not validated, and DPS echoes the one we sent.
  assignment.registration_id = config.registration_id;
  assignment.id_scope = config.id_scope;
  assignment.substatus = state.substatus;
  assignment.payload_json = state.payload_json;
  assignment.provisioned_at_unix = static_cast<std::int64_t>(std::time(nullptr));
  assignment.attestation = identity.names.attestation;
  assignment.enrollment = identity.names.enrollment;
  assignment.key_uri = identity.names.key_uri;
  assignment.endpoint = identity.names.endpoint;
  assignment.fingerprint = identity.fingerprint;
  assignment.transport = core::transport_name(transport);
  return assignment;
}

}  // namespace dpsd::app
