#include "io/transport/tls_stream.hpp"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <climits>

#include "io/dns_resolver.hpp"
#include "io/openssl_error.hpp"

namespace dpsd::io::transport {
namespace {

int clamp(std::size_t size) {
  return size > INT_MAX ? INT_MAX : static_cast<int>(size);
}

TlsStream::BioState& state_of(BIO* bio) {
  return *static_cast<TlsStream::BioState*>(BIO_get_data(bio));
}

// Remembers how the stream below ended: OpenSSL only sees -1 or 0.
int note_end(TlsStream::BioState& state) {
  const Close& end = state.below->close_reason();
  if (end.reason == CloseReason::PeerClosed && end.detail.empty()) {
    state.eof = true;
    return 0;
  }
  state.failed = true;
  return -1;
}

int bio_write(BIO* bio, const char* data, int length) {
  BIO_clear_retry_flags(bio);
  TlsStream::BioState& state = state_of(bio);
  const IoResult out = state.below->write(data, static_cast<std::size_t>(length));
  if (out.status == IoResult::Status::Ok) return static_cast<int>(out.bytes);
  if (out.status == IoResult::Status::WouldBlock) {
    BIO_set_retry_write(bio);
    return -1;
  }
  note_end(state);
  return -1;  // a write has no "0 bytes: end of stream"
}

int bio_read(BIO* bio, char* data, int length) {
  BIO_clear_retry_flags(bio);
  TlsStream::BioState& state = state_of(bio);
  const IoResult in = state.below->read(data, static_cast<std::size_t>(length));
  if (in.status == IoResult::Status::Ok) return static_cast<int>(in.bytes);
  if (in.status == IoResult::Status::WouldBlock) {
    BIO_set_retry_read(bio);
    return -1;
  }
  return note_end(state);
}

long bio_ctrl(BIO* bio, int cmd, long /*num*/, void* /*ptr*/) {
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // the stream below does not buffer what it accepted
    case BIO_CTRL_EOF:
      return state_of(bio).eof ? 1 : 0;
    default:
      return 0;
  }
}

const BIO_METHOD* stream_bio_method() {
  struct MethodDeleter {
    void operator()(BIO_METHOD* method) const { BIO_meth_free(method); }
  };
  static const std::unique_ptr<BIO_METHOD, MethodDeleter> method = [] {
    std::unique_ptr<BIO_METHOD, MethodDeleter> m(
        BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "dpsd transport stream"));
    if (m) {
      BIO_meth_set_write(m.get(), bio_write);
      BIO_meth_set_read(m.get(), bio_read);
      BIO_meth_set_ctrl(m.get(), bio_ctrl);
    }
    return m;
  }();
  return method.get();
}

}  // namespace

TlsStream::TlsStream(SSL_CTX* ctx, std::unique_ptr<Stream> below, std::string host)
    : LayeredStream(std::move(below)), ctx_(ctx), host_(std::move(host)) {
  bio_.below = below_.get();
}

TlsStream::~TlsStream() = default;

bool TlsStream::set_up() {
  const auto fail = [this](const std::string& what) {
    close_ = Close(CloseReason::SetupFailed, Stage::Tls, what);
    return false;
  };
  ERR_clear_error();
  ssl_.reset(SSL_new(ctx_));
  if (!ssl_) return fail("cannot create connection: " + openssl_reason());
  // Partial writes let the relay hand SSL_write whatever it has and keep the rest buffered;
  // a retry may then come from a buffer that moved (the relay compacts it) and is never shorter.
  SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

  // SNI is only defined for host names (RFC 6066); an IP literal is checked against the
  // certificate's IP SANs instead of its DNS names.
  bool names_ok = true;
  if (parse_ip_literal(host_, 0)) {
    names_ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_.get()), host_.c_str()) == 1;
  } else {
    names_ok = SSL_set_tlsext_host_name(ssl_.get(), host_.c_str()) == 1 &&
               SSL_set1_host(ssl_.get(), host_.c_str()) == 1;
    // The name must match a DNS SAN: a certificate without SANs is not matched on its subject
    // CN (RFC 6125 6.4.4 leaves that to legacy clients; IoT Hub and DPS certificates carry
    // SANs), so "CN=localhost" alone proves nothing.
    SSL_set_hostflags(ssl_.get(),
                      X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
  }
  if (!names_ok) return fail("cannot check host name " + host_ + ": " + openssl_reason());

  BIO* bio = BIO_new(stream_bio_method());
  if (bio == nullptr) return fail("cannot create BIO: " + openssl_reason());
  BIO_set_data(bio, &bio_);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_.get(), bio, bio);  // the SSL owns the BIO from here on
  SSL_set_connect_state(ssl_.get());
  return true;
}

Progress TlsStream::step() {
  if (!ssl_ && !set_up()) return Progress::Failed;
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_.get());
  if (rc == 1) return Progress::Done;
  const int error = SSL_get_error(ssl_.get(), rc);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
    handshake_want_ = error == SSL_ERROR_WANT_READ ? Want::Read : Want::Write;
    return Progress::Pending;
  }
  close_ = handshake_failure(error);
  return Progress::Failed;
}

Close TlsStream::handshake_failure(int ssl_error) {
  // The chain or the name did not verify: say which check failed, in OpenSSL's words
  // ("hostname mismatch", "unable to get local issuer certificate").
  const long verify = SSL_get_verify_result(ssl_.get());
  if (verify != X509_V_OK) {
    return Close(CloseReason::VerifyFailed, Stage::Tls, X509_verify_cert_error_string(verify));
  }
  if (ssl_error == SSL_ERROR_SSL && ERR_peek_error() != 0) {
    return Close(CloseReason::TlsFailure, Stage::Tls, openssl_reason());
  }
  if (ssl_error != SSL_ERROR_ZERO_RETURN && bio_.failed) {
    Close below = below_->close_reason();  // errno's words: "connection reset by peer"
    below.stage = Stage::Tls;
    return below;
  }
  return Close(CloseReason::PeerClosed, Stage::Tls);
}

Close TlsStream::io_failure(int ssl_error) {
  if (ssl_error == SSL_ERROR_ZERO_RETURN) return Close(CloseReason::PeerClosed);
  if (ssl_error == SSL_ERROR_SSL) {
    // OpenSSL 3 reports a TCP close without close_notify this way; for MQTT, whose packets are
    // self-delimiting, that is an ordinary close (brokers and load balancers do it).
    if (ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
      ERR_clear_error();
      return Close(CloseReason::PeerClosed);
    }
    return Close(CloseReason::TlsFailure, Stage::Relay, openssl_reason());
  }
  if (ssl_error == SSL_ERROR_SYSCALL) {
    if (!bio_.failed) return Close(CloseReason::PeerClosed);
    Close below = below_->close_reason();
    if (below.reason == CloseReason::PeerClosed) below.detail.clear();  // EPIPE: gone in order
    return below;
  }
  return Close(CloseReason::TlsFailure, Stage::Relay, "error " + std::to_string(ssl_error));
}

IoResult TlsStream::read(char* data, std::size_t size) {
  ERR_clear_error();
  const int n = SSL_read(ssl_.get(), data, clamp(size));
  if (n > 0) return IoResult::ok(static_cast<std::size_t>(n));
  const int error = SSL_get_error(ssl_.get(), n);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
    read_want_ = error == SSL_ERROR_WANT_READ ? Want::Read : Want::Write;
    return IoResult::would_block();
  }
  close_ = io_failure(error);
  return IoResult::closed();
}

IoResult TlsStream::write(const char* data, std::size_t size) {
  if (size == 0) return IoResult::ok(0);  // nothing of ours waits: SSL_write sends whole records
  ERR_clear_error();
  const int n = SSL_write(ssl_.get(), data, clamp(size));
  if (n > 0) return IoResult::ok(static_cast<std::size_t>(n));
  const int error = SSL_get_error(ssl_.get(), n);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
    write_want_ = error == SSL_ERROR_WANT_READ ? Want::Read : Want::Write;
    return IoResult::would_block();
  }
  close_ = io_failure(error);
  return IoResult::closed();
}

std::uint32_t TlsStream::wanted_events(bool reading, bool writing) const {
  const bool below_reading =
      (reading && read_want_ == Want::Read) || (writing && write_want_ == Want::Read);
  const bool below_writing =
      (reading && read_want_ == Want::Write) || (writing && write_want_ == Want::Write);
  return below_->wanted_events(below_reading, below_writing);
}

std::uint32_t TlsStream::handshake_events() const {
  return below_->wanted_events(handshake_want_ == Want::Read, handshake_want_ == Want::Write);
}

void TlsStream::shutdown() {
  if (!ssl_) return;
  SSL_shutdown(ssl_.get());
  ERR_clear_error();
  below_->shutdown();
}

}  // namespace dpsd::io::transport
