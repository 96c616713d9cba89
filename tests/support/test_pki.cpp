#include "support/test_pki.hpp"

#include <chrono>
#include <stdexcept>
#include <vector>

#include "support/files.hpp"
#include "support/process.hpp"

namespace dpsd::test {
namespace {

using namespace std::chrono_literals;

void openssl(const std::filesystem::path& dir, std::vector<std::string> args) {
  args.insert(args.begin(), "openssl");
  ProcessOptions opts;
  opts.working_dir = dir;
  // A site-wide openssl.cnf must not change what we generate.
  opts.unset_env = {"OPENSSL_CONF"};
  CommandResult r = run_command(args, 30s, opts);
  if (r.exit_code != 0) {
    std::string cmd;
    for (const auto& a : args) cmd += a + " ";
    throw std::runtime_error("TestPki: `" + cmd + "` failed (" + std::to_string(r.exit_code) +
                             "): " + r.err);
  }
}

// Our own config file, so only the extensions written here end up in the certificates.
void write_config(const std::filesystem::path& path, std::string_view extensions) {
  std::string text =
      "[req]\n"
      "distinguished_name = dn\n"
      "prompt = no\n"
      "[dn]\n"
      "CN = placeholder\n"
      "[ext]\n";
  text += extensions;
  write_file(path, text, 0600);
}

void make_ca(const std::filesystem::path& dir, const std::string& name, const std::string& cn) {
  const auto cnf = dir / (name + ".cnf");
  write_config(cnf,
               "basicConstraints = critical,CA:TRUE\n"
               "keyUsage = critical,keyCertSign,cRLSign\n"
               "subjectKeyIdentifier = hash\n");
  openssl(dir, {"req",
                "-x509",
                "-new",
                "-config",
                cnf.string(),
                "-extensions",
                "ext",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                name + ".key",
                "-out",
                name + ".pem",
                "-days",
                "3650",
                "-subj",
                "/CN=" + cn});
}

void make_leaf(const std::filesystem::path& dir, const std::string& ca, const std::string& name,
               const std::string& cn, const std::string& extensions) {
  const auto cnf = dir / (name + ".cnf");
  write_config(cnf,
               "basicConstraints = CA:FALSE\n"
               "subjectKeyIdentifier = hash\n"
               "authorityKeyIdentifier = keyid\n" +
                   extensions);
  openssl(dir, {"req", "-new", "-config", cnf.string(), "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout", name + ".key", "-out",
                name + ".csr", "-subj", "/CN=" + cn});
  openssl(dir, {"x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                "-CAcreateserial", "-days", "825", "-extfile", cnf.string(), "-extensions", "ext",
                "-out", name + ".pem"});
  std::filesystem::remove(dir / (name + ".csr"));
}

}  // namespace

TestPki::TestPki(std::filesystem::path dir) : dir_(std::move(dir)) {
  make_ca(dir_, "ca", "dpsd test CA");
  make_leaf(dir_, "ca", "server", "localhost",
            "keyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = serverAuth\n"
            "subjectAltName = DNS:localhost,IP:127.0.0.1\n");
  make_leaf(dir_, "ca", "wrong_host", "wrong.example",
            "keyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = serverAuth\n"
            "subjectAltName = DNS:wrong.example\n");
  make_ca(dir_, "other_ca", "unrelated test CA");
  make_leaf(dir_, "other_ca", "other_server", "localhost",
            "keyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = serverAuth\n"
            "subjectAltName = DNS:localhost,IP:127.0.0.1\n");
}

CertKey TestPki::client_cert(std::string_view cn) const {
  const std::string name = "client-" + std::string(cn);
  CertKey out{dir_ / (name + ".pem"), dir_ / (name + ".key")};
  if (!std::filesystem::exists(out.cert)) {
    make_leaf(dir_, "ca", name, std::string(cn),
              "keyUsage = critical,digitalSignature\n"
              "extendedKeyUsage = clientAuth\n");
  }
  return out;
}

}  // namespace dpsd::test
