#include "io/tls_context.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>

#include "io/openssl_error.hpp"

namespace dpsd::io {
namespace {

// TLS 1.2 suites: ECDHE (forward secrecy) with AEAD only. These are the suites Azure IoT Hub
// and DPS recommend and enforce for TLS 1.2 ("Transport Layer Security (TLS) support in IoT
// Hub", https://learn.microsoft.com/azure/iot-hub/iot-hub-tls-support#cipher-suites, and
// https://learn.microsoft.com/azure/iot-dps/tls-support): ECDHE-ECDSA/RSA with AES-GCM. The
// ChaCha20-Poly1305 pair is as strong and costs nothing when the server does not pick it.
// TLS 1.3 suites are set separately and stay at OpenSSL's defaults (all AEAD, all ECDHE/DHE).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// Certificates the store holds right now: what a CA file put there. (A CA directory is read
// lazily at verification time, so it is not counted here; see has_hashed_certificate.)
int certificates_in(SSL_CTX* ctx) {
  int count = 0;
  STACK_OF(X509_OBJECT)* objects = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
  for (int i = 0; i < sk_X509_OBJECT_num(objects); ++i) {
    if (X509_OBJECT_get_type(sk_X509_OBJECT_value(objects, i)) == X509_LU_X509) ++count;
  }
  return count;
}

// "<8 hex digits>.<n>": the names c_rehash / update-ca-certificates give certificates in an
// OpenSSL hashed CA directory.
bool is_hashed_name(const std::string& name) {
  if (name.size() < 10 || name[8] != '.') return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (i < 8 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    if (i > 8 && !(c >= '0' && c <= '9')) return false;
  }
  return true;
}

// Whether a hashed CA directory holds at least one readable certificate. `dirs` is a
// ':'-separated list, as in SSL_CERT_DIR.
bool has_hashed_certificate(const std::string& dirs) {
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const std::string dir = dirs.substr(start, end - start);
    start = end + 1;
    if (dir.empty()) continue;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, ec), last; !ec && it != last;
         it.increment(ec)) {
      if (!is_hashed_name(it->path().filename().string())) continue;
      std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(it->path().c_str(), "re"),
                                                           &std::fclose);
      if (!file) continue;
      X509* cert = PEM_read_X509(file.get(), nullptr, nullptr, nullptr);
      ERR_clear_error();
      if (cert != nullptr) {
        X509_free(cert);
        return true;
      }
    }
  }
  return false;
}

Error no_certificates_in(const std::filesystem::path& bundle) {
  return Error{"no trusted CA certificates found in " + bundle.string() +
               ": put PEM CA certificates there or change [tls] trust_bundle"};
}

// The OS default paths as OpenSSL itself resolves them (SSL_CERT_FILE / SSL_CERT_DIR win).
std::string default_path(const char* env_name, const char* builtin) {
  const char* value = ::secure_getenv(env_name);
  return value != nullptr ? value : builtin;
}

}  // namespace

Expected<SslCtxPtr> make_client_tls_context(
    const std::optional<std::filesystem::path>& trust_bundle) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) return Error{"TLS: cannot create context: " + openssl_reason()};

  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1) {
    return Error{"TLS: cannot set minimum version TLS 1.2: " + openssl_reason()};
  }
  if (SSL_CTX_set_cipher_list(ctx.get(), kTls12Ciphers) != 1) {
    return Error{"TLS: cannot set the TLS 1.2 cipher list: " + openssl_reason()};
  }
  // No callback: a chain that does not verify fails the handshake, always. Host name checks are
  // per connection (SecureChannel sets the name on each SSL).
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  // Server-initiated renegotiation (TLS 1.2) is never needed by IoT Hub/DPS and is attack
  // surface.
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);

  // Without a single CA every handshake fails with a bare "certificate verify failed"; on a
  // minimal image without ca-certificates nothing else would say why, so say it here.
  if (trust_bundle) {
    // Only the configured bundle: trusting the OS store as well would widen trust silently.
    if (SSL_CTX_load_verify_locations(ctx.get(), trust_bundle->c_str(), nullptr) != 1) {
      // A file that cannot be opened is named with errno's words; one that opens but yields
      // no certificate (empty, a key, garbage) is the missing-CA case.
      if (!ERR_SYSTEM_ERROR(ERR_peek_error()) && certificates_in(ctx.get()) == 0) {
        ERR_clear_error();
        return no_certificates_in(*trust_bundle);
      }
      return Error{"TLS: cannot load trust bundle " + trust_bundle->string() + ": " +
                   openssl_reason()};
    }
    if (certificates_in(ctx.get()) == 0) {  // e.g. only a CRL
      return no_certificates_in(*trust_bundle);
    }
    return ctx;
  }
  if (SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
    return Error{"TLS: cannot use the system trust store: " + openssl_reason()};
  }
  ERR_clear_error();  // a missing default file is not an error to OpenSSL; it is counted below
  const std::string file =
      default_path(X509_get_default_cert_file_env(), X509_get_default_cert_file());
  const std::string dir =
      default_path(X509_get_default_cert_dir_env(), X509_get_default_cert_dir());
  if (certificates_in(ctx.get()) == 0 && !has_hashed_certificate(dir)) {
    return Error{"no trusted CA certificates found in " + file +
                 ": install ca-certificates or set [tls] trust_bundle"};
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
