#pragma once
// The one client SSL_CTX: TLS 1.2 minimum, peer verification always on (there is no switch to
// turn it off), trust from the configured bundle only when one is given (so the whole OS store
// is not parsed for nothing) or else from the OS default paths.
#include <openssl/ssl.h>

#include <filesystem>
#include <memory>
#include <optional>

#include "core/expected.hpp"
#include "io/c_ptr.hpp"
#include "io/identity.hpp"

namespace dpsd::io {

using SslCtxPtr = CPtr<SSL_CTX, SSL_CTX_free>;

// TLS 1.2 is limited to ECDHE + AEAD suites (what IoT Hub/DPS offer); TLS 1.3 keeps OpenSSL's
// suites. Error names the bundle path and OpenSSL's reason; a trust source that yields no CA
// certificate at all (an empty or certificate-less bundle, or no OS store: neither the default
// file, normally /etc/ssl/certs/ca-certificates.crt, nor the hashed directory holds one) is
// "no trusted CA certificates found in <file>: install ca-certificates or set [tls]
// trust_bundle" (for a configured bundle the advice is about that file).
Expected<SslCtxPtr> make_client_tls_context(
    const std::optional<std::filesystem::path>& trust_bundle);

// X.509 attestation: presents the identity's certificate, its chain and its private key (which
// may live in a PKCS#11 token) as the TLS client certificate on every connection from ctx.
// The SSL_CTX takes its own references; the Identity must outlive it only when the key is in a
// token (the engine behind the key must stay initialised).
Status use_client_identity(SSL_CTX* ctx, const Identity& identity);

}  // namespace dpsd::io
