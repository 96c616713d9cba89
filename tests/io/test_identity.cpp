// io::load_identity() and use_client_identity() with file and credential keys from a throw-away
// PKI: CN and notAfter extraction, chains, the key/certificate match, file modes, and TLS client
// authentication against `openssl s_server -Verify 1`.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <string>

#include "io/client_auth_probe.hpp"
#include "io/identity.hpp"
#include "io/tls_context.hpp"
#include "support/files.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"

namespace dpsd::io {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using dpsd::test::TempDir;
using dpsd::test::TestPki;

class IdentityTest : public ::testing::Test {
 protected:
  IdentityTest() : pki_(dir_.path()) {}

  // A copy of the key with the given mode (TestPki writes its files with its own modes).
  fs::path key_copy(const fs::path& key, mode_t mode, const std::string& name = "key.pem") {
    const fs::path out = keys_.path() / name;
    test::write_file(out, test::read_file(key), mode);
    return out;
  }

  static std::string uri(const fs::path& path) { return "file://" + path.string(); }

  TempDir dir_{"identity-pki"};
  TempDir keys_{"identity-keys"};
  TestPki pki_;
};

TEST_F(IdentityTest, LoadsFileKeyAndExposesCnAndExpiry) {
  const auto device = pki_.client_cert("gateway-0042");
  auto identity = load_identity(uri(device.cert), uri(key_copy(device.key, 0600)), std::nullopt);
  ASSERT_TRUE(identity) << identity.error();
  EXPECT_EQ(identity->subject_cn(), "gateway-0042");
  EXPECT_TRUE(identity->chain().empty());
  EXPECT_FALSE(identity->key_in_token());
  const auto digest = test::run_command(
      {"openssl", "x509", "-in", device.cert.string(), "-noout", "-fingerprint", "-sha256"}, 30s);
  std::string expected = digest.out.substr(digest.out.find('=') + 1);
  expected.erase(std::remove(expected.begin(), expected.end(), ':'), expected.end());
  expected.erase(expected.find_last_not_of("\n") + 1);
  std::transform(expected.begin(), expected.end(), expected.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  EXPECT_EQ(identity->certificate_sha256(), "sha256:" + expected);
  // TestPki signs client certificates for 825 days.
  const auto left = identity->not_after() - std::chrono::system_clock::now();
  EXPECT_GT(left, std::chrono::hours(24 * 824));
  EXPECT_LT(left, std::chrono::hours(24 * 826));
  EXPECT_FALSE(expiry_warning(*identity, std::chrono::system_clock::now()));
  const auto warning =
      expiry_warning(*identity, identity->not_after() - std::chrono::hours(24 * 10));
  ASSERT_TRUE(warning);
  EXPECT_NE(warning->find("in 10 days"), std::string::npos) << *warning;
  const auto expired = expiry_warning(*identity, identity->not_after() + 1h);
  ASSERT_TRUE(expired);
  EXPECT_NE(expired->find("expired"), std::string::npos) << *expired;
}

TEST_F(IdentityTest, ReadsTheChainAfterTheLeaf) {
  const auto device = pki_.client_cert("with-chain");
  const fs::path bundle = keys_.path() / "chain.pem";
  test::write_file(bundle, test::read_file(device.cert) + test::read_file(pki_.ca_path()));
  auto identity = load_identity(uri(bundle), uri(key_copy(device.key, 0600)), std::nullopt);
  ASSERT_TRUE(identity) << identity.error();
  EXPECT_EQ(identity->subject_cn(), "with-chain");
  EXPECT_EQ(identity->chain().size(), 1U);
}

TEST_F(IdentityTest, LoadsKeyFromCredential) {
  const auto device = pki_.client_cert("cred-device");
  key_copy(device.key, 0644, "device-key");  // credentials are not mode-checked
  ::setenv("CREDENTIALS_DIRECTORY", keys_.path().c_str(), 1);
  auto identity = load_identity(uri(device.cert), "credential:device-key", std::nullopt);
  ::unsetenv("CREDENTIALS_DIRECTORY");
  ASSERT_TRUE(identity) << identity.error();
  EXPECT_EQ(identity->subject_cn(), "cred-device");
}

TEST_F(IdentityTest, RefusesAKeyOfAnotherCertificate) {
  const auto device = pki_.client_cert("dev-a");
  const auto other = pki_.client_cert("dev-b");
  auto identity = load_identity(uri(device.cert), uri(key_copy(other.key, 0600)), std::nullopt);
  ASSERT_FALSE(identity);
  EXPECT_EQ(
      identity.error(),
      "identity_pk: the private key does not belong to the certificate in " + device.cert.string());
}

TEST_F(IdentityTest, RefusesAKeyReadableByOthers) {
  const auto device = pki_.client_cert("open-key");
  const fs::path key = key_copy(device.key, 0644);
  auto identity = load_identity(uri(device.cert), uri(key), std::nullopt);
  ASSERT_FALSE(identity);
  EXPECT_EQ(identity.error(), "identity_pk file " + key.string() +
                                  " has mode 0644; it must not be readable or writable by others "
                                  "(chmod o-rwx " +
                                  key.string() + ")");
  // The rule of key files: group read is fine when the group is dpsd's own (0640 root:dpsd,
  // the documented install), group write never is.
  ASSERT_EQ(::chown(key.c_str(), static_cast<uid_t>(-1), ::getegid()), 0);
  ASSERT_EQ(::chmod(key.c_str(), 0640), 0);
  EXPECT_TRUE(load_identity(uri(device.cert), uri(key), std::nullopt));
  ASSERT_EQ(::chmod(key.c_str(), 0660), 0);
  auto writable = load_identity(uri(device.cert), uri(key), std::nullopt);
  ASSERT_FALSE(writable);
  EXPECT_NE(writable.error().find("must not be writable by its group"), std::string::npos)
      << writable.error();
}

// A FIFO, a directory or a symlink where the certificate should be is refused at once (a FIFO
// used to block BIO_new_file's fopen() for ever), and the message names the path.
TEST_F(IdentityTest, CertificateThatIsNotARegularFileIsRefusedWithoutBlocking) {
  const auto device = pki_.client_cert("not-regular");
  const std::string key = uri(key_copy(device.key, 0600));
  const fs::path fifo = keys_.path() / "fifo.pem";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  // In a child with a deadline: on the old code the open blocks for ever.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::alarm(5);
    auto from_fifo = load_identity(uri(fifo), key, std::nullopt);
    const bool refused = !from_fifo && from_fifo.error() == "identity_cert: " + fifo.string() +
                                                                " is a FIFO, not a regular file";
    ::_exit(refused ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "load_identity blocked on a FIFO certificate";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the FIFO was not refused as such";

  auto from_dir = load_identity(uri(keys_.path()), key, std::nullopt);
  ASSERT_FALSE(from_dir);
  EXPECT_EQ(from_dir.error(),
            "identity_cert: " + keys_.path().string() + " is a directory, not a regular file");

  const fs::path link = keys_.path() / "link.pem";
  fs::create_symlink(device.cert, link);
  auto from_link = load_identity(uri(link), key, std::nullopt);
  ASSERT_FALSE(from_link);
  EXPECT_EQ(from_link.error(), "identity_cert: " + link.string() +
                                   " is a symbolic link; refusing to follow it (name the file "
                                   "itself)");
}

TEST_F(IdentityTest, ErrorsNameTheSetting) {
  const auto device = pki_.client_cert("errors");
  auto no_cert = load_identity(uri(keys_.path() / "missing.pem"), uri(key_copy(device.key, 0600)),
                               std::nullopt);
  ASSERT_FALSE(no_cert);
  EXPECT_EQ(no_cert.error().rfind("identity_cert: cannot open ", 0), 0U) << no_cert.error();
  // A key file where the certificate should be: no certificate in it.
  auto key_as_cert = load_identity(uri(device.key), uri(key_copy(device.key, 0600)), std::nullopt);
  ASSERT_FALSE(key_as_cert);
  EXPECT_NE(key_as_cert.error().find("holds no PEM certificate"), std::string::npos);
  // A certificate where the key should be; the file's text is never echoed.
  auto cert_as_key =
      load_identity(uri(device.cert), uri(key_copy(device.cert, 0600, "c.pem")), std::nullopt);
  ASSERT_FALSE(cert_as_key);
  EXPECT_NE(cert_as_key.error().find("holds no unencrypted PEM private key"), std::string::npos);
  auto pkcs11 = load_identity(uri(device.cert), "pkcs11:token=t;object=k", std::nullopt);
  ASSERT_FALSE(pkcs11);
  EXPECT_EQ(pkcs11.error(), "identity_pk: a pkcs11: key needs [pkcs11] module");
}

TEST_F(IdentityTest, CheckIdentityComparesCnWithRegistrationId) {
  const auto device = pki_.client_cert("gateway-7");
  core::Config config;
  config.method = core::AttestationMethod::X509;
  config.identity_cert_uri = uri(device.cert);
  config.identity_pk_uri = uri(key_copy(device.key, 0600));
  config.registration_id = "gateway-7";
  EXPECT_TRUE(check_identity(config));
  config.registration_id = "gateway-8";
  const auto status = check_identity(config);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error(),
            "identity_cert: the certificate's subject CN is \"gateway-7\" but "
            "provisioning.registration_id is \"gateway-8\"; DPS takes the CN as the registration "
            "ID, so they must be equal (ignoring case)");
}

// DPS registration ids are case-insensitive, so a CN that differs only in case is the same id.
TEST_F(IdentityTest, CheckIdentityIgnoresCase) {
  const auto device = pki_.client_cert("Gateway-Upper");
  core::Config config;
  config.method = core::AttestationMethod::X509;
  config.identity_cert_uri = uri(device.cert);
  config.identity_pk_uri = uri(key_copy(device.key, 0600));
  config.registration_id = "gateway-upper";
  EXPECT_TRUE(check_identity(config));
  config.registration_id = "GATEWAY-UPPER";
  EXPECT_TRUE(check_identity(config));
  config.registration_id = "gateway-uppe";
  EXPECT_FALSE(check_identity(config));
}

TEST_F(IdentityTest, ClientAuthenticationWithFileKey) {
  const auto device = pki_.client_cert("tls-device");
  auto identity = load_identity(uri(device.cert), uri(key_copy(device.key, 0600)), std::nullopt);
  ASSERT_TRUE(identity) << identity.error();
  auto server = test::start_client_auth_server(pki_);

  auto without = make_client_tls_context(pki_.ca_path());
  ASSERT_TRUE(without) << without.error();
  EXPECT_NE(test::tls_round_trip(without->get(), server.port), "")
      << "the server must refuse a client without a certificate";

  auto with = make_client_tls_context(pki_.ca_path());
  ASSERT_TRUE(with) << with.error();
  ASSERT_TRUE(use_client_identity(with->get(), *identity));
  EXPECT_EQ(test::tls_round_trip(with->get(), server.port), "") << server.process->stderr_text();
}

TEST_F(IdentityTest, ClientCertificateFromAnotherCaIsRefused) {
  // Self-signed: valid by itself but not under the server's CA.
  const fs::path cert = keys_.path() / "self.pem";
  const fs::path key = keys_.path() / "self.key";
  const auto made = test::run_command(
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", key.string(), "-out", cert.string(), "-days", "5", "-subj", "/CN=stranger"},
      30s);
  ASSERT_EQ(made.exit_code, 0) << made.err;
  fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write);
  auto identity = load_identity(uri(cert), uri(key), std::nullopt);
  ASSERT_TRUE(identity) << identity.error();
  ASSERT_TRUE(expiry_warning(*identity, std::chrono::system_clock::now()));  // 5 days left
  auto server = test::start_client_auth_server(pki_);
  auto ctx = make_client_tls_context(pki_.ca_path());
  ASSERT_TRUE(ctx) << ctx.error();
  ASSERT_TRUE(use_client_identity(ctx->get(), *identity));
  EXPECT_NE(test::tls_round_trip(ctx->get(), server.port), "");
}

}  // namespace
}  // namespace dpsd::io
