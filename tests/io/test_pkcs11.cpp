// PKCS#11 against a SoftHSM token made at run time: an EC private key loaded through the
// OpenSSL pkcs11 engine authenticates a TLS client to `openssl s_server -Verify 1`, and the
// in-token HMAC signer gives the same bytes as the software HMAC for the same secret.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/sas_token.hpp"
#include "io/client_auth_probe.hpp"
#include "io/identity.hpp"
#include "io/pkcs11_signer.hpp"
#include "io/softhsm_token.hpp"
#include "io/tls_context.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"

namespace dpsd::io {
namespace {

using dpsd::test::SoftHsmToken;

std::vector<unsigned char> known_secret() {
  std::vector<unsigned char> secret(32);
  for (std::size_t i = 0; i < secret.size(); ++i) secret[i] = static_cast<unsigned char>(i);
  return secret;
}

std::string hex(const core::Bytes& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (auto b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

// One token for the whole suite: the pkcs11 engine keeps the module initialised for the rest of
// the process (ENGINE_finish does not C_Finalize), so a second token directory in the same
// process would never be seen.
struct Fixture {
  Fixture() : pki(pki_dir.path()) {
    device = pki.client_cert("hsm-device");
    token.import_key(device.key, "k", "01");
    token.import_secret("hmac", known_secret());
    settings.module = test::kSoftHsmModule;
    settings.pin_file = token.pin_file();
  }
  test::TempDir pki_dir{"pkcs11-pki"};
  test::TestPki pki;
  test::CertKey device;
  SoftHsmToken token;
  Pkcs11Settings settings;
};

class Pkcs11Test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { fixture_ = std::make_unique<Fixture>(); }
  static void TearDownTestSuite() { fixture_.reset(); }
  Pkcs11Test()
      : pki_dir_(fixture_->pki_dir),
        pki_(fixture_->pki),
        device_(fixture_->device),
        settings_(fixture_->settings) {}

  static std::unique_ptr<Fixture> fixture_;
  test::TempDir& pki_dir_;
  test::TestPki& pki_;
  test::CertKey& device_;
  Pkcs11Settings& settings_;
};
std::unique_ptr<Fixture> Pkcs11Test::fixture_;

// First: PKCS#11 login state is per process, so once the engine (below) has logged in, a wrong
// PIN would no longer be noticed when the whole binary runs in one process.
TEST_F(Pkcs11Test, SignerErrors) {
  auto no_key = make_pkcs11_signer("pkcs11:token=t;object=absent", settings_);
  ASSERT_FALSE(no_key);
  EXPECT_EQ(no_key.error(), "no secret key object \"absent\" in token \"t\"");
  auto no_token = make_pkcs11_signer("pkcs11:token=other;object=hmac", settings_);
  ASSERT_FALSE(no_token);
  EXPECT_NE(no_token.error().find("no token \"other\""), std::string::npos) << no_token.error();
  Pkcs11Settings wrong_pin = settings_;
  wrong_pin.pin_file = pki_dir_.path() / "wrong-pin";
  test::write_file(*wrong_pin.pin_file, "9999\n", 0600);
  auto bad_login = make_pkcs11_signer("pkcs11:token=t;object=hmac", wrong_pin);
  ASSERT_FALSE(bad_login);
  EXPECT_NE(bad_login.error().find("CKR_PIN_INCORRECT"), std::string::npos) << bad_login.error();
  Pkcs11Settings open_pin = settings_;
  open_pin.pin_file = pki_dir_.path() / "open-pin";
  test::write_file(*open_pin.pin_file, "1234\n", 0644);
  auto refused = make_pkcs11_signer("pkcs11:token=t;object=hmac", open_pin);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().find("has mode 0644"), std::string::npos) << refused.error();
}

TEST_F(Pkcs11Test, EngineKeyAuthenticatesTlsClient) {
  auto identity = load_identity("file://" + device_.cert.string(),
                                "pkcs11:token=t;object=k;type=private", settings_);
  ASSERT_TRUE(identity) << identity.error();
  EXPECT_TRUE(identity->key_in_token());
  EXPECT_EQ(identity->subject_cn(), "hsm-device");

  auto server = test::start_client_auth_server(pki_);
  auto ctx = make_client_tls_context(pki_.ca_path());
  ASSERT_TRUE(ctx) << ctx.error();
  ASSERT_TRUE(use_client_identity(ctx->get(), *identity));
  EXPECT_EQ(test::tls_round_trip(ctx->get(), server.port), "") << server.process->stderr_text();
}

TEST_F(Pkcs11Test, EngineKeyOfAnotherCertificateIsRefused) {
  const auto other = pki_.client_cert("someone-else");
  auto identity = load_identity("file://" + other.cert.string(),
                                "pkcs11:token=t;object=k;type=private", settings_);
  ASSERT_FALSE(identity);
  EXPECT_NE(identity.error().find("does not belong to the certificate"), std::string::npos)
      << identity.error();
}

TEST_F(Pkcs11Test, EngineErrorsNameTheKey) {
  auto missing = load_identity("file://" + device_.cert.string(),
                               "pkcs11:token=t;object=nope;type=private", settings_);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().find("no private key pkcs11:token=t;object=nope"), std::string::npos)
      << missing.error();
}

TEST_F(Pkcs11Test, HmacInTokenEqualsSoftwareHmac) {
  auto signer = make_pkcs11_signer("pkcs11:token=t;object=hmac", settings_);
  ASSERT_TRUE(signer) << signer.error();
  const std::string message = "0ne00000000%2fregistrations%2fhsm-device\n1700000000";
  auto in_token = (*signer)(message);
  ASSERT_TRUE(in_token) << in_token.error();
  // RFC 2104 HMAC-SHA256 with key 00 01 … 1f, computed independently (Python hmac).
  EXPECT_EQ(hex(*in_token), "f699f24a5a63f8d0e881e7b75766a2a57675df9d635d498854d634cce9b38739");
  auto software = core::make_memory_signer("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
  ASSERT_TRUE(software) << software.error();
  EXPECT_EQ(*in_token, *(*software)(message));
  // The same token signs SAS tokens byte for byte like the software key.
  auto token_sas = core::make_sas_token(*signer, "0ne00000000", "hsm-device", 1700000000);
  auto software_sas = core::make_sas_token(*software, "0ne00000000", "hsm-device", 1700000000);
  ASSERT_TRUE(token_sas && software_sas);
  EXPECT_EQ(*token_sas, *software_sas);
  EXPECT_TRUE(check_pkcs11_key("pkcs11:token=t;object=hmac", settings_));
}

}  // namespace
}  // namespace dpsd::io
