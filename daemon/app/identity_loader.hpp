#pragma once
// Everything an attempt needs from the device's identity, prepared in one place: the SAS signer
// (a key file or credential, derived for group enrollments, or a key that stays in a PKCS#11
// token) or the X.509 certificate and key, the TLS context that carries them, the fingerprint of
// the provisioning inputs, and the names the state file and D-Bus show. One error path: every
// failure is an Error whose message starts with the setting it concerns ("symmetric_key: …",
// "identity_cert: …", "tls: …", "paths.runtime_dir: …") and whose code keeps the cause
// (NotFound, PermissionDenied, NotRegularFile, TooLarge, Invalid, Crypto for a refused key or
// PIN, Io for a failing system call), so a caller can tell a local identity problem from
// anything else by code, not by text.
#include <cstdint>
#include <memory>
#include <string>

#include "core/config.hpp"
#include "core/dps_messages.hpp"
#include "core/expected.hpp"
#include "core/sas_token.hpp"
#include "core/state_record.hpp"
#include "core/transport.hpp"
#include "io/identity.hpp"
#include "io/key_source.hpp"
#include "io/tls_context.hpp"

namespace dpsd::app {

// What the state file records about the inputs, and what GetConnectionInfo calls the method.
struct IdentityNames {
  std::string attestation;  // "symmetric_key" | "x509"
  std::string enrollment;   // "individual" | "group"
  std::string key_uri;      // the key the fingerprint and the state name
  std::string endpoint;     // "host:port"
};
IdentityNames identity_names(const core::Config& config);

struct PreparedIdentity {
  // X.509 client certificate and key. Declared before tls so it is destroyed after it: a key
  // that lives in a PKCS#11 token needs its engine for as long as the SSL_CTX holds it.
  std::unique_ptr<io::Identity> x509;
  io::SslCtxPtr tls;
  core::Signer signer;        // symmetric keys: computes the SAS HMAC; empty for X.509
  io::SecretText device_key;  // base64, for GetConnectionInfo; empty for X.509 and token keys
  std::string fingerprint;    // of the provisioning inputs (core::compute_fingerprint)
  std::uint64_t certificate_not_after_usec = 0;  // X.509 only
  IdentityNames names;
};

// Loads the key or certificate named by the config, builds the TLS context, and creates the
// private directory the relay socket lives in. Warns (log) about a certificate near its expiry.
Expected<PreparedIdentity> prepare_identity(const core::Config& config);

// What state.json records about an assignment DPS made for this identity: the reply's hub,
// device and payload, provisioned now, with the inputs' names and fingerprint.
core::Assignment assignment_record(const core::Config& config, const PreparedIdentity& identity,
                                   const core::RegistrationState& state, core::Transport transport);

}  // namespace dpsd::app
