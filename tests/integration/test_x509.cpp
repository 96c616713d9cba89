// X.509 attestation and PKCS#11 keys against the DPS emulator's X.509 listener (client
// certificate required, CN == registration id): first the emulator itself, driven by the MQTT
// test client, then the real dpsd with a file key, a SoftHSM key, and a symmetric key whose HMAC
// runs in SoftHSM.
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "dpsd_fixture.hpp"
#include "io/softhsm_token.hpp"
#include "support/mqtt_client.hpp"

namespace dpsd::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

class X509 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EmulatorOptions options;
    options.x509 = true;
    options.websocket = true;
    emulator_ = std::make_unique<DpsEmulator>(options);
    // One token per process: a PKCS#11 module keeps its first configuration while loaded.
    token_ = std::make_unique<SoftHsmToken>();
  }
  static void TearDownTestSuite() {
    token_.reset();
    emulator_.reset();
  }

  DpsEmulator& emulator() { return *emulator_; }
  SoftHsmToken& token() { return *token_; }

  // A lower-case registration id unique to the running test.
  static std::string regid(const std::string& suffix = "") {
    std::string id = std::string("x509-") +
                     ::testing::UnitTest::GetInstance()->current_test_info()->name() + suffix;
    for (auto& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return id;
  }

  std::string username(const std::string& id) const {
    return emulator_->scope() + "/registrations/" + id + "/api-version=2019-03-31";
  }

  // The MQTT test client on the X.509 listener with the given certificate, no password.
  std::unique_ptr<MqttTestClient> client(const std::string& id, const CertKey& cert) {
    MqttClientOptions o;
    o.port = emulator_->x509_port();
    o.client_id = id;
    o.username = username(id);
    o.cafile = emulator_->ca_path();
    o.certfile = cert.cert;
    o.keyfile = cert.key;
    return std::make_unique<MqttTestClient>(o);
  }

  // Registers over an open client; the status of the first answer (0 when none arrived).
  static int register_status(MqttTestClient& c) {
    if (c.subscribe("$dps/registrations/res/#", 1) != std::optional<int>(1)) return 0;
    c.publish("$dps/registrations/PUT/iotdps-register/?$rid=1", "{}");
    auto m = c.next_message(5s);
    if (!m) return 0;
    const std::string prefix = "$dps/registrations/res/";
    return std::stoi(m->topic.substr(prefix.size(), 3));
  }

  // config.toml for an X.509 device on the X.509 listener; `key_uri` is identity_pk.
  void write_x509_config(const Device& device, const CertKey& cert, const std::string& key_uri,
                         const std::string& extra = "") {
    write_file(
        device.config_path(),
        "[provisioning]\nglobal_endpoint = \"localhost:" + std::to_string(emulator_->x509_port()) +
            "\"\nid_scope = \"" + emulator_->scope() + "\"\nregistration_id = \"" + device.regid() +
            "\"\n[provisioning.attestation]\nmethod = \"x509\"\nidentity_cert = \"file://" +
            cert.cert.string() + "\"\nidentity_pk = \"" + key_uri + "\"\n[tls]\n" +
            "trust_bundle = \"" + emulator_->ca_path().string() +
            "\"\n[network]\nconnect_timeout = \"3s\"\ntls_handshake_timeout = \"3s\"\n" +
            "response_timeout = \"5s\"\n[retry]\ninitial = \"200ms\"\nmax = \"1s\"\n" +
            "[paths]\nstate_dir = \"" + (device.dir() / "state").string() + "\"\nruntime_dir = \"" +
            (device.dir() / "run").string() + "\"\n" + extra);
  }

  // Points the device at the emulator's X.509 WebSocket listener (what 443 is in the field).
  void use_websocket(const Device& device) const {
    std::string text = read_file(device.config_path());
    text = std::regex_replace(
        text, std::regex("global_endpoint = \"localhost:[0-9]+\""),
        "global_endpoint = \"localhost:" + std::to_string(emulator_->x509_ws_port()) +
            "\"\ntransport = \"mqtt-ws\"");
    write_file(device.config_path(), text);
  }

  std::string pkcs11_table() const {
    return "[pkcs11]\nmodule = \"" + kSoftHsmModule.string() + "\"\npin_file = \"" +
           token_->pin_file().string() + "\"\n";
  }

  // A 0600 copy of a TestPki key inside the device's own keys directory.
  static std::string private_copy(const Device& device, const CertKey& cert) {
    const auto path = device.dir() / "keys" / "identity.key";
    write_file(path, read_file(cert.key), 0600);
    return "file://" + path.string();
  }

  static std::unique_ptr<DpsEmulator> emulator_;
  static std::unique_ptr<SoftHsmToken> token_;
};

std::unique_ptr<DpsEmulator> X509::emulator_;
std::unique_ptr<SoftHsmToken> X509::token_;

// --- the emulator's X.509 listener ------------------------------------------------------------

TEST_F(X509, EmulatorAcceptsCertificateWhoseCnIsTheRegistrationId) {
  const std::string id = regid();
  emulator().set_x509_device(id, {{"name", "immediate"}});
  auto c = client(id, emulator().pki().client_cert(id));
  ASSERT_EQ(c->connect(), 0) << c->error();
  EXPECT_EQ(register_status(*c), 200);
  const auto connects = emulator().events("connect", id);
  ASSERT_EQ(connects.size(), 1U);
  EXPECT_EQ(connects[0]["auth"], "ok");
  EXPECT_EQ(connects[0]["cert_cn"], id);
  EXPECT_TRUE(connects[0]["password"].is_null());
}

TEST_F(X509, EmulatorAnswers401WhenCnIsNotTheRegistrationId) {
  const std::string id = regid();
  emulator().set_x509_device(id, {{"name", "immediate"}});
  auto c = client(id, emulator().pki().client_cert(id + "-other"));
  ASSERT_EQ(c->connect(), 0) << c->error();
  EXPECT_EQ(register_status(*c), 401);
  EXPECT_EQ(emulator().events("connect", id).at(0)["auth"], "cn_mismatch");
}

TEST_F(X509, EmulatorRefusesCertificateFromAnotherCaAtTls) {
  const std::string id = regid();
  emulator().set_x509_device(id);
  // other_server's certificate is signed by the unrelated CA; the broker stops the handshake.
  auto c = client(id, {emulator().pki().other_server_cert(), emulator().pki().other_server_key()});
  EXPECT_EQ(c->connect(), -1);
  EXPECT_EQ(emulator().count_events("connect", id), 0U);
}

TEST_F(X509, EmulatorRefusesUnenrolledCertificate) {
  const std::string id = regid();
  auto c = client(id, emulator().pki().client_cert(id));
  ASSERT_EQ(c->connect(), 0) << c->error();
  EXPECT_EQ(register_status(*c), 401);
  EXPECT_EQ(emulator().events("connect", id).at(0)["auth"], "unknown_registration");
}

// --- dpsd --------------------------------------------------------------------------------------

TEST_F(X509, ProvisionsOverWebSocketOn443StyleListener) {
  Device device(emulator(), regid());
  emulator().set_x509_device(device.regid(), {{"name", "immediate"}});
  const auto cert = emulator().pki().client_cert(device.regid());
  write_x509_config(device, cert, private_copy(device, cert));
  use_websocket(device);
  const RunResult r = device.once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(device.state()["transport"], "mqtt-ws");
  const auto connects = emulator().events("connect", device.regid());
  ASSERT_FALSE(connects.empty());
  EXPECT_EQ(connects.back()["auth"], "ok") << connects.back().dump();
  EXPECT_EQ(connects.back()["cert_cn"], device.regid()) << connects.back().dump();
}

TEST_F(X509, ProvisionsWithFileKey) {
  Device device(emulator(), regid());
  emulator().set_x509_device(device.regid(), {{"name", "normal"}, {"polls", 1}});
  const auto cert = emulator().pki().client_cert(device.regid());
  write_x509_config(device, cert, private_copy(device, cert));
  const RunResult r = device.once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(device.state()["attestation"], "x509");
  const auto connects = emulator().events("connect", device.regid());
  ASSERT_FALSE(connects.empty());
  EXPECT_EQ(connects.back()["auth"], "ok");
  EXPECT_TRUE(connects.back()["password"].is_null()) << connects.back().dump();
}

TEST_F(X509, ProvisionsWithSoftHsmKey) {
  Device device(emulator(), regid());
  emulator().set_x509_device(device.regid(), {{"name", "immediate"}});
  const auto cert = emulator().pki().client_cert(device.regid());
  token().import_key(cert.key, device.regid(), "0a");
  write_x509_config(device, cert, "pkcs11:token=t;object=" + device.regid() + ";type=private",
                    pkcs11_table());
  const RunResult check = device.run({"--check-config"});
  EXPECT_EQ(check.exit_code, 0) << describe(check);
  const RunResult r = device.once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(emulator().events("connect", device.regid()).back()["auth"], "ok");
}

TEST_F(X509, ProvisionsWithSoftHsmKeyOverWebSocket) {
  Device device(emulator(), regid());
  emulator().set_x509_device(device.regid(), {{"name", "immediate"}});
  const auto cert = emulator().pki().client_cert(device.regid());
  token().import_key(cert.key, device.regid(), "0b");
  write_x509_config(device, cert, "pkcs11:token=t;object=" + device.regid() + ";type=private",
                    pkcs11_table());
  use_websocket(device);
  const RunResult r = device.once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(device.state()["transport"], "mqtt-ws");
  const auto connect = emulator().events("connect", device.regid()).back();
  EXPECT_EQ(connect["auth"], "ok") << connect.dump();
  EXPECT_EQ(connect["cert_cn"], device.regid());
}

TEST_F(X509, CheckConfigRefusesCnOtherThanRegistrationId) {
  Device device(emulator(), regid());
  const auto cert = emulator().pki().client_cert(device.regid() + "-not");
  write_x509_config(device, cert, private_copy(device, cert));
  const RunResult r = device.run({"--check-config"});
  EXPECT_EQ(r.exit_code, 2) << describe(r);
  EXPECT_NE(r.err.find("subject CN is \"" + device.regid() + "-not\""), std::string::npos)
      << describe(r);
}

TEST_F(X509, SymmetricKeyInSoftHsm) {
  Device device(emulator(), regid());
  emulator().set_device(device.regid(), device.key(), {{"name", "immediate"}});
  const auto secret = core::base64_decode(device.key());
  ASSERT_TRUE(secret);
  token().import_secret("hmac-" + device.regid(), *secret);
  device.write_config(pkcs11_table());
  // Replace the file key with the token's key (write_config names the file key).
  std::string text = read_file(device.config_path());
  const std::string file_uri = "\"file://" + device.key_path().string() + "\"";
  text.replace(text.find(file_uri), file_uri.size(),
               "\"pkcs11:token=t;object=hmac-" + device.regid() + "\"");
  write_file(device.config_path(), text, 0644);
  std::filesystem::remove(device.key_path());  // the key is only in the token now
  const RunResult r = device.once();
  ASSERT_EQ(r.exit_code, 0) << describe(r);
  EXPECT_EQ(emulator().events("connect", device.regid()).back()["auth"], "ok");
}

}  // namespace
}  // namespace dpsd::test
