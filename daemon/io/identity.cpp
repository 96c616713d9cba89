// Built with -Wno-deprecated-declarations (daemon/CMakeLists.txt): OpenSSL 3 deprecates the
// ENGINE API, but Debian 12 ships no pkcs11-provider, so libengine-pkcs11-openssl is the only
// packaged way to use a key that stays in a PKCS#11 token. Only this file uses ENGINE.
#include "io/identity.hpp"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "core/sha256_label.hpp"
#include "io/openssl_error.hpp"
#include "io/regular_file.hpp"

namespace dpsd::io {

namespace {

// A certificate chain or a PEM key is a few KiB; this bounds a read of a wrong path.
constexpr std::size_t kMaxSecretSize = std::size_t{64} * 1024;

using BioPtr = CPtr<BIO, BIO_free>;

// Same rules as key_source.cpp's read_key(): O_NOFOLLOW and the private-file mode rule for files
// (private_file_problem: nothing for others, group read only for dpsd's own group, so the
// documented 0640 root:dpsd install works), since a symlink or a readable file is a key someone
// else can copy or swap. read_opened_file reads into one buffer that never reallocates,
// and SecretText wipes it.
Expected<SecretText> read_private(const std::string& path, const std::string& what,
                                  bool enforce_private) {
  std::string text;
  auto read = read_secret_file(path, what, enforce_private, kMaxSecretSize, text);
  SecretText secret(std::move(text));
  if (!read) return read.failure();
  return secret;
}

// The certificate file is public, but it is opened like every other file dpsd reads: a FIFO must
// not hang --check-config or the daemon, and a symlink in the keys directory is refused as for
// the key beside it.
Expected<std::vector<X509Ptr>> read_chain(const std::string& path) {
  auto pem = read_regular_file(path, kMaxSecretSize, path);
  if (!pem) return pem.failure();
  BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  if (!bio) return Error{Errc::Crypto, "cannot read " + path + ": " + openssl_reason()};
  std::vector<X509Ptr> chain;
  for (;;) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    chain.push_back(std::move(cert));
  }
  // PEM_read_bio_X509 ends every file with "no start line"; only a first failure is an error.
  const unsigned long last = ERR_peek_last_error();
  if (chain.empty()) {
    return Error{Errc::Invalid, path + " holds no PEM certificate" +
                                    (last != 0 ? " (" + openssl_reason() + ")" : std::string())};
  }
  if (ERR_GET_REASON(last) == PEM_R_NO_START_LINE) {
    ERR_clear_error();
  } else if (last != 0) {
    return Error{Errc::Invalid, path + ": certificate " + std::to_string(chain.size() + 1) +
                                    " cannot be read: " + openssl_reason()};
  }
  return chain;
}

std::string subject_cn(X509* cert) {
  const X509_NAME* name = X509_get_subject_name(cert);
  const int index = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (index < 0) return {};
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, index));
  unsigned char* utf8 = nullptr;
  const int length = ASN1_STRING_to_UTF8(&utf8, data);
  if (length < 0) return {};
  std::string out(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(length));
  OPENSSL_free(utf8);
  return out;
}

Expected<std::chrono::system_clock::time_point> not_after(X509* cert) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) {
    return Error{Errc::Invalid, "the certificate's notAfter cannot be read: " + openssl_reason()};
  }
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

Expected<EvpPkeyPtr> pem_key(const SecretText& pem, const std::string& what) {
  BioPtr bio(BIO_new_mem_buf(pem.view().data(), static_cast<int>(pem.view().size())));
  if (!bio) return Error{Errc::Crypto, "cannot read " + what + ": " + openssl_reason()};
  // No passphrase callback: an encrypted key would need a secret in the config; use a
  // credential (systemd encrypts those) or a token instead.
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(
      bio.get(), nullptr, [](char*, int, int, void*) { return -1; }, nullptr));
  if (!key) {
    return Error{Errc::Invalid,
                 what + " holds no unencrypted PEM private key (" + openssl_reason() + ")"};
  }
  return key;
}

struct EngineKey {
  EnginePtr engine;
  EvpPkeyPtr key;
};

// libengine-pkcs11-openssl: ENGINE_by_id("pkcs11") finds /usr/lib/<arch>/engines-3/pkcs11.so
// through OpenSSL's dynamic engine; MODULE_PATH must be set before ENGINE_init, which loads it.
Expected<EngineKey> engine_key(const std::string& uri, const Pkcs11Settings& settings) {
  auto pin = load_pin(settings);
  if (!pin) return pin.failure();
  ENGINE_load_dynamic();
  ENGINE* raw = ENGINE_by_id("pkcs11");
  if (raw == nullptr) {
    return Error{Errc::Unsupported,
                 "the OpenSSL pkcs11 engine is not available (install libengine-pkcs11-openssl): " +
                     openssl_reason()};
  }
  if (ENGINE_ctrl_cmd_string(raw, "MODULE_PATH", settings.module.c_str(), 0) != 1) {
    ENGINE_free(raw);
    return Error{Errc::Crypto, "pkcs11 engine: cannot set module " + settings.module.string() +
                                   ": " + openssl_reason()};
  }
  if (ENGINE_init(raw) != 1) {
    ENGINE_free(raw);
    return Error{Errc::Crypto, "pkcs11 engine: cannot load module " + settings.module.string() +
                                   ": " + openssl_reason()};
  }
  EngineKey out;
  out.engine.reset(raw);  // from here the deleter does ENGINE_finish + ENGINE_free
  if (!pin->view().empty() && ENGINE_ctrl_cmd_string(raw, "PIN", pin->view().c_str(), 0) != 1) {
    return Error{Errc::Crypto, "pkcs11 engine: cannot set the PIN: " + openssl_reason()};
  }
  out.key.reset(ENGINE_load_private_key(raw, uri.c_str(), nullptr, nullptr));
  if (!out.key) {
    return Error{Errc::Crypto,
                 "no private key " + uri + " in module " + settings.module.string() +
                     " (wrong token or object label, or wrong PIN): " + openssl_reason()};
  }
  return out;
}

}  // namespace

void EngineDeleter::operator()(engine_st* engine) const {
  ENGINE_finish(engine);
  ENGINE_free(engine);
}

std::optional<Pkcs11Settings> pkcs11_settings(const core::Config& config) {
  if (!config.pkcs11_module) return std::nullopt;
  return Pkcs11Settings{*config.pkcs11_module, config.pkcs11_pin_file,
                        config.pkcs11_pin_credential};
}

Expected<SecretText> read_secret(std::string_view uri, std::string_view what) {
  auto parsed = core::parse_key_uri(uri);
  if (!parsed) return parsed.failure().within(std::string(what));
  if (parsed->kind == core::KeyUri::Kind::File) {
    return read_private(parsed->value, std::string(what) + " file " + parsed->value, true);
  }
  const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
  if (dir == nullptr || *dir == '\0') {
    return Error{Errc::NotFound, std::string(what) + ": credential '" + parsed->value +
                                     "' not found: $CREDENTIALS_DIRECTORY is not set (add "
                                     "LoadCredential= or SetCredential= to the service)"};
  }
  const std::string path = std::string(dir) + "/" + parsed->value;
  return read_private(
      path, std::string(what) + " credential '" + parsed->value + "' (" + path + ")", false);
}

Expected<SecretText> load_pin(const Pkcs11Settings& settings) {
  Expected<SecretText> pin = SecretText();
  if (settings.pin_file) {
    pin = read_secret("file://" + settings.pin_file->string(), "pkcs11.pin_file");
  } else if (settings.pin_credential) {
    pin = read_secret("credential:" + *settings.pin_credential, "pkcs11.pin_credential");
  }
  if (!pin) return pin;
  // Editors and `echo` add a newline that is not part of the PIN.
  std::string text = pin->view();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return SecretText(std::move(text));
}

std::string Identity::certificate_sha256() const {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (X509_digest(certificate(), EVP_sha256(), digest.data(), &length) != 1) return {};
  return core::sha256_label(digest.data(), length);
}

std::vector<X509*> Identity::chain() const {
  std::vector<X509*> out;
  for (std::size_t i = 1; i < chain_.size(); ++i) out.push_back(chain_[i].get());
  return out;
}

Expected<Identity> load_identity(std::string_view cert_uri, std::string_view key_uri,
                                 const std::optional<Pkcs11Settings>& pkcs11) {
  ERR_clear_error();
  Identity identity;
  auto cert_path = core::parse_key_uri(cert_uri);
  if (!cert_path || cert_path->kind != core::KeyUri::Kind::File) {
    return Error{Errc::Invalid, "identity_cert: must be file:///absolute/path.pem"};
  }
  auto chain = read_chain(cert_path->value);
  if (!chain) return chain.failure().within("identity_cert");
  identity.chain_ = std::move(chain.value());
  identity.subject_cn_ = subject_cn(identity.certificate());
  auto expiry = not_after(identity.certificate());
  if (!expiry) return expiry.failure().within("identity_cert");
  identity.not_after_ = *expiry;

  if (core::is_pkcs11_uri(key_uri)) {
    if (!pkcs11) return Error{Errc::Invalid, "identity_pk: a pkcs11: key needs [pkcs11] module"};
    auto loaded = engine_key(std::string(key_uri), *pkcs11);
    if (!loaded) return loaded.failure().within("identity_pk");
    identity.engine_ = std::move(loaded->engine);
    identity.key_ = std::move(loaded->key);
  } else {
    auto pem = read_secret(key_uri, "identity_pk");
    if (!pem) return pem.failure();
    auto key = pem_key(*pem, "identity_pk");
    if (!key) return key.failure().within("identity_pk");
    identity.key_ = std::move(key.value());
  }
  if (X509_check_private_key(identity.certificate(), identity.key_.get()) != 1) {
    ERR_clear_error();
    return Error{
        Errc::Crypto,
        "identity_pk: the private key does not belong to the certificate in " + cert_path->value};
  }
  return identity;
}

Expected<Identity> load_identity(const core::Config& config) {
  return load_identity(config.identity_cert_uri, config.identity_pk_uri, pkcs11_settings(config));
}

Status check_identity(const core::Config& config) {
  auto identity = load_identity(config);
  if (!identity) return identity.failure();
  // DPS registration IDs are case-insensitive, so DPS accepts a CN that differs only in case.
  if (!core::same_registration_id(identity->subject_cn(), config.registration_id)) {
    return Error{Errc::Invalid,
                 "identity_cert: the certificate's subject CN is \"" + identity->subject_cn() +
                     "\" but provisioning.registration_id is \"" + config.registration_id +
                     "\"; DPS takes the CN as the registration ID, so they must be equal (ignoring "
                     "case)"};
  }
  return ok_status();
}

std::optional<std::string> expiry_warning(const Identity& identity,
                                          std::chrono::system_clock::time_point now,
                                          std::chrono::hours warn_before) {
  const auto left = identity.not_after() - now;
  if (left > warn_before) return std::nullopt;
  const std::time_t when = std::chrono::system_clock::to_time_t(identity.not_after());
  std::tm tm{};
  gmtime_r(&when, &tm);
  std::array<char, 32> text{};
  (void)std::strftime(text.data(), text.size(), "%Y-%m-%dT%H:%M:%SZ", &tm);
  if (left <= std::chrono::seconds(0)) {
    return "the device certificate (CN \"" + identity.subject_cn() + "\") expired at " +
           text.data() + "; DPS will refuse it: renew it";
  }
  const auto days = std::chrono::duration_cast<std::chrono::hours>(left).count() / 24;
  return "the device certificate (CN \"" + identity.subject_cn() + "\") expires at " + text.data() +
         " (in " + std::to_string(days) + " days): renew it";
}

}  // namespace dpsd::io
