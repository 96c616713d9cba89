#pragma once
// A throw-away PKI made with the openssl CLI at run time (EC P-256, so it takes well under a
// second), so no key material is checked in and nothing expires in the repository.
#include <filesystem>
#include <string>
#include <string_view>

namespace dpsd::test {

struct CertKey {
  std::filesystem::path cert;
  std::filesystem::path key;
};

class TestPki {
 public:
  // Creates everything in `dir` (which must exist). Throws std::runtime_error with openssl's
  // stderr on failure.
  explicit TestPki(std::filesystem::path dir);

  const std::filesystem::path& dir() const { return dir_; }
  // The test CA every "good" certificate chains to.
  std::filesystem::path ca_path() const { return dir_ / "ca.pem"; }
  std::filesystem::path ca_key_path() const { return dir_ / "ca.key"; }
  // CN=localhost, SAN DNS:localhost, IP:127.0.0.1, signed by the CA.
  std::filesystem::path server_cert() const { return dir_ / "server.pem"; }
  std::filesystem::path server_key() const { return dir_ / "server.key"; }
  // Signed by the CA but for SAN DNS:wrong.example only: the hostname check must reject it.
  std::filesystem::path wrong_host_cert() const { return dir_ / "wrong_host.pem"; }
  std::filesystem::path wrong_host_key() const { return dir_ / "wrong_host.key"; }
  // An unrelated CA and a localhost server certificate signed by it: the chain check must fail.
  std::filesystem::path other_ca_path() const { return dir_ / "other_ca.pem"; }
  std::filesystem::path other_server_cert() const { return dir_ / "other_server.pem"; }
  std::filesystem::path other_server_key() const { return dir_ / "other_server.key"; }

  // A TLS client certificate (CN=cn, extendedKeyUsage clientAuth) signed by the CA, for X.509
  // attestation; files are client-<cn>.pem/.key. Created on first use, reused afterwards.
  CertKey client_cert(std::string_view cn) const;

 private:
  std::filesystem::path dir_;
};

}  // namespace dpsd::test
