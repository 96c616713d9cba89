// dpsd's TLS policy against `openssl s_server` with certificates made at test time: the host
// name must match a SAN (never the subject CN), TLS 1.2 is ECDHE + AEAD only, and a trust source
// without a single CA certificate is reported as such instead of as a later "verify failed".
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/event_loop.hpp"
#include "io/secure_channel.hpp"
#include "io/tls_context.hpp"
#include "support/files.hpp"
#include "support/net.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"
#include "support/test_pki.hpp"

namespace dpsd::io {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using dpsd::test::CertKey;
using dpsd::test::Process;
using dpsd::test::TempDir;
using dpsd::test::TestPki;

std::unique_ptr<TempDir> pki_dir;
std::unique_ptr<TestPki> pki;
CertKey no_san;  // CN=localhost, no subjectAltName, signed by the test CA
CertKey rsa;     // RSA key (for the non-forward-secret RSA key exchange), SAN localhost

void openssl(std::vector<std::string> args) {
  args.insert(args.begin(), "openssl");
  test::ProcessOptions opts;
  opts.working_dir = pki_dir->path();
  opts.unset_env = {"OPENSSL_CONF"};
  const auto r = test::run_command(args, 60s, opts);
  ASSERT_EQ(r.exit_code, 0) << args[1] << ": " << r.err;
}

// A leaf signed by the test CA with exactly `extensions`.
CertKey make_leaf(const std::string& name, std::vector<std::string> key,
                  const std::string& extensions) {
  const fs::path dir = pki_dir->path();
  test::write_file(dir / (name + ".ext"), "basicConstraints = CA:FALSE\n" + extensions, 0600);
  std::vector<std::string> req = {"req",  "-new",        "-nodes", "-keyout",      name + ".key",
                                  "-out", name + ".csr", "-subj",  "/CN=localhost"};
  req.insert(req.end(), key.begin(), key.end());
  openssl(req);
  openssl({"x509", "-req", "-in", name + ".csr", "-CA", pki->ca_path().string(), "-CAkey",
           pki->ca_key_path().string(), "-set_serial", "0x" + std::to_string(name.size()) + "77",
           "-days", "30", "-extfile", name + ".ext", "-out", name + ".pem"});
  return {dir / (name + ".pem"), dir / (name + ".key")};
}

class TlsPolicyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_dir = std::make_unique<TempDir>("dpsd-tls-policy");
    pki = std::make_unique<TestPki>(pki_dir->path());
    no_san = make_leaf("nosan", {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"},
                       "keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n");
    rsa = make_leaf("rsa", {"-newkey", "rsa:2048"},
                    "keyUsage = critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage = serverAuth\n"
                    "subjectAltName = DNS:localhost,IP:127.0.0.1\n");
  }
  static void TearDownTestSuite() {
    pki.reset();
    pki_dir.reset();
  }

  void SetUp() override {
    auto ctx = make_client_tls_context(pki->ca_path());
    ASSERT_TRUE(ctx.ok()) << ctx.error();
    tls_ = std::move(ctx.value());
  }

  std::unique_ptr<Process> start_server(const CertKey& cert, std::vector<std::string> extra) {
    port_ = test::free_port();
    std::vector<std::string> argv = {"openssl",
                                     "s_server",
                                     "-rev",
                                     "-accept",
                                     "127.0.0.1:" + std::to_string(port_),
                                     "-cert",
                                     cert.cert.string(),
                                     "-key",
                                     cert.key.string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto server = std::make_unique<Process>(argv);
    if (!test::wait_for_tcp_port(port_, 10s)) {
      ADD_FAILURE() << "s_server did not listen within 10 s: " << server->stderr_text();
    }
    return server;
  }

  // Runs a channel to localhost:port_ until it is ready or closed; returns "" when ready, else
  // the close reason.
  std::string connect() {
    ChannelOptions o;
    o.host = "localhost";
    o.port = port_;
    o.socket_dir = sockets_.path();
    bool ready = false;
    std::optional<std::string> closed;
    SecureChannel channel(
        loop_.get(), tls_.get(), o, [&](const std::string&) { ready = true; },
        [&](const std::string& reason) { closed = reason; });
    channel.start();
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (!ready && !closed) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ADD_FAILURE() << "neither ready nor closed within 15 s";
        return "timeout";
      }
      sd_event_run(loop_.get(), 20'000);
    }
    return ready ? "" : *closed;
  }

  EventLoop loop_;
  TempDir sockets_{"dpsd-tls-sock"};
  SslCtxPtr tls_;
  std::uint16_t port_ = 0;
};

TEST_F(TlsPolicyTest, CertificateWithoutSanIsRefusedDespiteMatchingCn) {
  auto server = start_server(no_san, {});
  EXPECT_EQ(connect(), "TLS: certificate verify failed (hostname mismatch)");
}

TEST_F(TlsPolicyTest, Tls12WithoutForwardSecrecyIsRefused) {
  auto server = start_server(rsa, {"-tls1_2", "-cipher", "AES128-SHA"});
  const std::string reason = connect();
  EXPECT_EQ(reason.rfind("TLS: handshake failed: ", 0), 0u) << reason;
}

TEST_F(TlsPolicyTest, Tls12CbcIsRefusedEvenWithEcdhe) {
  auto server = start_server(rsa, {"-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"});
  const std::string reason = connect();
  EXPECT_EQ(reason.rfind("TLS: handshake failed: ", 0), 0u) << reason;
}

TEST_F(TlsPolicyTest, Tls12EcdheGcmStillWorksWithRsaAndEcdsaCertificates) {
  {
    auto server = start_server(rsa, {"-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"});
    EXPECT_EQ(connect(), "") << "TLS 1.2 ECDHE-RSA-AES128-GCM-SHA256 (RSA certificate)";
  }
  {
    auto server = start_server({pki->server_cert(), pki->server_key()},
                               {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"});
    EXPECT_EQ(connect(), "") << "TLS 1.2 ECDHE-ECDSA-AES256-GCM-SHA384 (EC certificate)";
  }
}

TEST_F(TlsPolicyTest, Tls13DefaultsStillWork) {
  auto server = start_server({pki->server_cert(), pki->server_key()}, {"-tls1_3"});
  EXPECT_EQ(connect(), "");
}

// --- The trust store --------------------------------------------------------------------------

// Sets SSL_CERT_FILE / SSL_CERT_DIR (which OpenSSL reads whenever it loads the default paths)
// for one scope, and puts the old values back.
class DefaultStoreOverride {
 public:
  DefaultStoreOverride(const std::string& file, const std::string& dir) {
    save("SSL_CERT_FILE", file);
    save("SSL_CERT_DIR", dir);
  }
  ~DefaultStoreOverride() {
    for (const auto& [name, value] : saved_) {
      if (value) {
        ::setenv(name.c_str(), value->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
  }

 private:
  void save(const std::string& name, const std::string& value) {
    const char* old = std::getenv(name.c_str());
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    ::setenv(name.c_str(), value.c_str(), 1);
  }
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

std::string no_ca_default(const fs::path& file) {
  return "no trusted CA certificates found in " + file.string() +
         ": install ca-certificates or set [tls] trust_bundle";
}

TEST(TrustStore, EmptyOsStoreSaysWhatToInstall) {
  TempDir tmp;
  test::write_file(tmp / "ca-certificates.crt", "", 0644);
  fs::create_directory(tmp / "certs");
  DefaultStoreOverride store((tmp / "ca-certificates.crt").string(), (tmp / "certs").string());
  const auto ctx = make_client_tls_context(std::nullopt);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.error(), no_ca_default(tmp / "ca-certificates.crt"));
}

TEST(TrustStore, MissingOsStoreSaysWhatToInstall) {
  TempDir tmp;
  DefaultStoreOverride store((tmp / "ca-certificates.crt").string(), (tmp / "certs").string());
  const auto ctx = make_client_tls_context(std::nullopt);
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.error(), no_ca_default(tmp / "ca-certificates.crt"));
}

TEST(TrustStore, HashedDirectoryAloneIsEnough) {
  TempDir pki_tmp;
  TestPki local(pki_tmp.path());
  TempDir tmp;
  fs::create_directory(tmp / "certs");
  const auto hash = test::run_command(
      {"openssl", "x509", "-noout", "-subject_hash", "-in", local.ca_path().string()}, 30s);
  ASSERT_EQ(hash.exit_code, 0) << hash.err;
  fs::copy_file(local.ca_path(), tmp / "certs" / (hash.out.substr(0, 8) + ".0"));
  DefaultStoreOverride store((tmp / "missing.crt").string(), (tmp / "certs").string());
  const auto ctx = make_client_tls_context(std::nullopt);
  EXPECT_TRUE(ctx.ok()) << ctx.error();
}

TEST(TrustStore, EmptyConfiguredBundleIsNamed) {
  TempDir tmp;
  test::write_file(tmp / "bundle.pem", "", 0644);
  const auto ctx = make_client_tls_context(tmp / "bundle.pem");
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.error(), "no trusted CA certificates found in " + (tmp / "bundle.pem").string() +
                             ": put PEM CA certificates there or change [tls] trust_bundle");
}

TEST(TrustStore, BundleWithOnlyAKeyHasNoCa) {
  TempDir pki_tmp;
  TestPki local(pki_tmp.path());
  const auto ctx = make_client_tls_context(local.ca_key_path());
  ASSERT_FALSE(ctx.ok());
  EXPECT_EQ(ctx.error(), "no trusted CA certificates found in " + local.ca_key_path().string() +
                             ": put PEM CA certificates there or change [tls] trust_bundle");
}

}  // namespace
}  // namespace dpsd::io
