#pragma once
// The one client SSL_CTX: TLS 1.2 minimum, peer verification always on (there is no switch to
// turn it off), trust from the configured bundle only when one is given (so the whole OS store
// is not parsed for nothing) or else from the OS default paths.
#include <openssl/ssl.h>

#include <filesystem>
#include <memory>
#include <optional>

#include "core/expected.hpp"

namespace dpsd::io {

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

// Error names the bundle path and OpenSSL's reason.
Expected<SslCtxPtr> make_client_tls_context(const std::optional<std::filesystem::path>& trust_bundle);

}  // namespace dpsd::io
