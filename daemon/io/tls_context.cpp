#include "io/tls_context.hpp"

#include <openssl/err.h>

#include <cstring>
#include <string>

#include "io/openssl_error.hpp"

namespace dpsd::io {
namespace {}  // namespace

Expected<SslCtxPtr> make_client_tls_context(
    const std::optional<std::filesystem::path>& trust_bundle) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return Error{"TLS: cannot create context: " + openssl_reason()};

  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1) {
    return Error{"TLS: cannot set minimum version TLS 1.2: " + openssl_reason()};
  }
  // No callback: a chain that does not verify fails the handshake, always. Host name checks are
  // per connection (SecureChannel sets the name on each SSL).
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  // Server-initiated renegotiation (TLS 1.2) is never needed by IoT Hub/DPS and is attack
  // surface.
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);

  if (trust_bundle) {
    // Only the configured bundle: trusting the OS store as well would widen trust silently.
    if (SSL_CTX_load_verify_locations(ctx.get(), trust_bundle->c_str(), nullptr) != 1) {
      return Error{"TLS: cannot load trust bundle " + trust_bundle->string() + ": " +
                   openssl_reason()};
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
    return Error{"TLS: cannot use the system trust store: " + openssl_reason()};
  }
  return ctx;
}

Status use_client_identity(SSL_CTX* ctx, const Identity& identity) {
  ERR_clear_error();
  if (SSL_CTX_use_certificate(ctx, identity.certificate()) != 1) {
    return Error{"TLS: cannot use the client certificate: " + openssl_reason()};
  }
  // Replace, not append: a context reused after a reload must not send an old chain too.
  SSL_CTX_clear_chain_certs(ctx);
  for (X509* cert : identity.chain()) {
    if (SSL_CTX_add1_chain_cert(ctx, cert) != 1) {
      return Error{"TLS: cannot add a chain certificate: " + openssl_reason()};
    }
  }
  if (SSL_CTX_use_PrivateKey(ctx, identity.private_key()) != 1) {
    return Error{"TLS: cannot use the client private key: " + openssl_reason()};
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return Error{"TLS: the client private key does not match the certificate: " + openssl_reason()};
  }
  return ok_status();
}

}  // namespace dpsd::io
