#pragma once
// A core::Signer whose HMAC-SHA256 runs inside a PKCS#11 token (CKM_SHA256_HMAC on a
// CKK_GENERIC_SECRET key), for `symmetric_key = "pkcs11:token=…;object=…"`: the DPS key never
// enters dpsd's memory. It talks to the module through the PKCS#11 C API directly (dlopen), not
// through the OpenSSL engine, which has no HMAC.
//
// Group enrollments are refused with a pkcs11: key (core::parse_config says so): the derived
// device key would have to leave the token. Store the derived key in the token instead.
#include <string_view>

#include "core/expected.hpp"
#include "core/sas_token.hpp"
#include "io/identity.hpp"

namespace dpsd::io {

// Loads the module, finds the token (token/serial/manufacturer/model of the URI) and exactly one
// secret key (object/id), logs in with the configured PIN, and returns a Signer that keeps the
// session open for as long as any copy of it lives. Errors name the module, token and object.
Expected<core::Signer> make_pkcs11_signer(std::string_view uri, const Pkcs11Settings& settings);

// For --check-config: make_pkcs11_signer() plus one test signature.
Status check_pkcs11_key(std::string_view uri, const Pkcs11Settings& settings);

}  // namespace dpsd::io
