#pragma once
// TLS over the stream below it (TCP, or TCP through a proxy's tunnel), with OpenSSL and the
// policy dpsd never relaxes: the peer is always verified (the SSL_CTX from io::tls_context), SNI
// carries the host name, the name must match a DNS SAN (never the subject CN, no partial
// wildcards), and an IP literal is checked against the certificate's IP SANs instead.
//
// OpenSSL reads and writes through a BIO that calls the stream below, so TLS needs no socket of
// its own and cannot raise SIGPIPE (the TCP stream sends with MSG_NOSIGNAL).
#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "io/transport/stream.hpp"

namespace dpsd::io::transport {

class TlsStream final : public LayeredStream {
 public:
  // host: the name (or IP literal) the certificate must carry; also the SNI.
  TlsStream(SSL_CTX* ctx, std::unique_ptr<Stream> below, std::string host);
  ~TlsStream() override;

  // The handshake. Failed: failure() is in Stage::Tls.
  Progress step() override;
  std::uint32_t handshake_events() const override;

  IoResult read(char* data, std::size_t size) override;
  IoResult write(const char* data, std::size_t size) override;
  std::uint32_t wanted_events(bool reading, bool writing) const override;
  void shutdown() override;  // close_notify, best effort; no wait for the answer

  // What the BIO needs of us: the stream below and what it said when it ended.
  struct BioState {
    Stream* below = nullptr;
    bool eof = false;     // the stream below ended in order: OpenSSL asks (BIO_CTRL_EOF)
    bool failed = false;  // it ended otherwise; its close_reason() says how
  };

 private:
  // What the last SSL call is blocked on. SSL_read can need to write and SSL_write to read (TLS
  // 1.3 key updates, session tickets), so each direction remembers its own.
  enum class Want { Read, Write };
  struct SslDeleter {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
  };

  bool set_up();
  Close io_failure(int ssl_error);
  Close handshake_failure(int ssl_error);

  // Destruction order: the SSL object goes first, then the BIO state it points to, then (in
  // LayeredStream) the stream below.
  SSL_CTX* ctx_;
  std::string host_;
  BioState bio_;
  std::unique_ptr<SSL, SslDeleter> ssl_;
  Want handshake_want_ = Want::Write;
  Want read_want_ = Want::Read;
  Want write_want_ = Want::Write;
};

}  // namespace dpsd::io::transport
