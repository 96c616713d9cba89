// parse_config() on in-memory documents: the value of every key, and one test per kind of
// problem a key's own rule finds. Whole-file scenarios are fixtures in tests/unit/config/
// (test_config_fixtures.cpp); drop-ins and merging are in test_config_merge.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.hpp"

namespace dpsd::core {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr const char* kMain = "/etc/dpsd/config.toml";

// The three required keys, so a test can add exactly the keys it is about.
const std::string kMinimal = R"(
[provisioning]
id_scope = "0ne00000000"
registration_id = "gateway-0042"
[provisioning.attestation]
symmetric_key = "file:///etc/dpsd/keys/device.key"
)";

ConfigResult parse(const std::string& text) {
  return parse_config({kMain, text});
}

// kMinimal, then `text` as the drop-in 10-a.toml (so it may open tables kMinimal has).
ConfigResult with_dropin(const std::string& text) {
  return parse_config({kMain, kMinimal}, {{"10-a.toml", text}});
}

// A scenario file of tests/unit/config/, parsed as the main file.
ConfigResult parse_fixture(const std::string& name) {
  std::ifstream in(std::filesystem::path(DPSD_SOURCE_DIR) / "tests/unit/config" / name);
  std::ostringstream text;
  text << in.rdbuf();
  EXPECT_FALSE(text.str().empty()) << "cannot read the fixture " << name;
  return parse(text.str());
}

std::vector<std::string> lines(const ConfigResult& result) {
  std::vector<std::string> out;
  for (const auto& p : result.problems) out.push_back(p.to_string());
  return out;
}

// The single problem of a result, failing the test when there is not exactly one.
ConfigProblem only_problem(const ConfigResult& result) {
  EXPECT_EQ(result.problems.size(), 1u) << ::testing::PrintToString(lines(result));
  EXPECT_FALSE(result.config.has_value());
  return result.problems.empty() ? ConfigProblem{} : result.problems.front();
}

TEST(ConfigProblem, ToStringOmitsEmptyKey) {
  EXPECT_EQ((ConfigProblem{"a.toml", "retry.max", "must be a string"}.to_string()),
            "a.toml: retry.max: must be a string");
  EXPECT_EQ((ConfigProblem{"a.toml", "", "cannot read: No such file or directory"}.to_string()),
            "a.toml: cannot read: No such file or directory");
}

TEST(ParseConfig, MinimalConfigGetsDefaults) {
  const auto result = parse(kMinimal);
  ASSERT_TRUE(result.config.has_value()) << ::testing::PrintToString(lines(result));
  EXPECT_TRUE(result.problems.empty());
  const Config& c = *result.config;
  EXPECT_EQ(c.endpoint_host, "global.azure-devices-provisioning.net");
  EXPECT_FALSE(c.endpoint_port.has_value());
  EXPECT_EQ(c.port(), 8883);
  EXPECT_EQ(c.id_scope, "0ne00000000");
  EXPECT_EQ(c.registration_id, "gateway-0042");
  EXPECT_FALSE(c.payload_file.has_value());
  EXPECT_FALSE(c.payload_json.has_value());
  EXPECT_EQ(c.method, AttestationMethod::SymmetricKey);
  EXPECT_EQ(c.enrollment, Enrollment::Individual);
  EXPECT_EQ(c.symmetric_key_uri, "file:///etc/dpsd/keys/device.key");
  EXPECT_EQ(c.sas_token_lifetime, seconds(3600));
  EXPECT_FALSE(c.trust_bundle.has_value());
  EXPECT_EQ(c.connect_timeout, milliseconds(10000));
  EXPECT_EQ(c.tls_handshake_timeout, milliseconds(10000));
  EXPECT_EQ(c.response_timeout, milliseconds(30000));
  EXPECT_EQ(c.retry_initial, milliseconds(2000));
  EXPECT_EQ(c.retry_max, milliseconds(300000));
  EXPECT_EQ(c.retry_refused, milliseconds(3600000));
  EXPECT_EQ(c.reprovision_on_start, ReprovisionOnStart::Never);
  EXPECT_EQ(c.stale_after, std::chrono::hours(24 * 30));
  EXPECT_EQ(c.transport, Transport::Mqtt);
  EXPECT_EQ(c.websocket_port, 443);
  EXPECT_FALSE(c.proxy);
  EXPECT_FALSE(c.proxy_configured);  // the environment decides
  EXPECT_FALSE(c.pkcs11_module || c.pkcs11_pin_file || c.pkcs11_pin_credential);
  EXPECT_EQ(c.state_dir, "/var/lib/dpsd");
  EXPECT_EQ(c.runtime_dir, "/run/dpsd");
}

TEST(ParseConfig, FullConfig) {
  const auto result = parse_fixture("valid_full.toml");
  ASSERT_TRUE(result.config.has_value()) << ::testing::PrintToString(lines(result));
  const Config& c = *result.config;
  EXPECT_EQ(c.endpoint_host, "dps.example.net");
  EXPECT_EQ(c.port(), 8884);
  EXPECT_EQ(c.id_scope, "0ne0012ABCD");
  EXPECT_EQ(c.registration_id, "a-b.c_d:e");
  EXPECT_EQ(c.payload_file, std::filesystem::path("/etc/dpsd/payload.json"));
  EXPECT_EQ(c.enrollment, Enrollment::Group);
  EXPECT_EQ(c.symmetric_key_uri, "credential:dps-key");
  EXPECT_EQ(c.sas_token_lifetime, seconds(7200));
  EXPECT_EQ(c.trust_bundle, std::filesystem::path("/etc/dpsd/ca.pem"));
  EXPECT_EQ(c.connect_timeout, milliseconds(5000));
  EXPECT_EQ(c.tls_handshake_timeout, milliseconds(7000));
  EXPECT_EQ(c.response_timeout, milliseconds(60000));
  EXPECT_EQ(c.retry_initial, milliseconds(250));
  EXPECT_EQ(c.retry_max, milliseconds(600000));
  EXPECT_EQ(c.retry_refused, milliseconds(86400000));
  EXPECT_EQ(c.state_dir, "/data/dpsd");
  EXPECT_EQ(c.runtime_dir, "/run/dpsd2");
}

TEST(ParseConfig, ReprovisionOnStart) {
  const auto result = parse_fixture("valid_reprovision_when_stale.toml");
  ASSERT_TRUE(result.config) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.config->reprovision_on_start, ReprovisionOnStart::WhenStale);
  EXPECT_EQ(result.config->stale_after, std::chrono::hours(24 * 7));
  const auto always = with_dropin("[provisioning]\nreprovision_on_start = \"always\"\n");
  ASSERT_TRUE(always.config);
  EXPECT_EQ(always.config->reprovision_on_start, ReprovisionOnStart::Always);
  EXPECT_EQ(only_problem(with_dropin("[provisioning]\nreprovision_on_start = true\n")).reason,
            "must be a string");
}

std::string with_endpoint(const std::string& endpoint) {
  return R"(
[provisioning]
id_scope = "0ne00000000"
registration_id = "gateway-0042"
global_endpoint = ")" +
         endpoint + R"("
[provisioning.attestation]
symmetric_key = "credential:k"
)";
}

TEST(ParseConfig, Endpoints) {
  struct Case {
    const char* text;
    const char* host;
    std::optional<std::uint16_t> port;
  };
  for (const Case& c :
       {Case{"dps.example.net", "dps.example.net", std::nullopt},
        Case{"dps.example.net:443", "dps.example.net", 443}, Case{"127.0.0.1:1", "127.0.0.1", 1},
        Case{"[::1]:65535", "::1", 65535}, Case{"[2001:db8::1]", "2001:db8::1", std::nullopt}}) {
    const auto result = parse(with_endpoint(c.text));
    ASSERT_TRUE(result.config.has_value()) << c.text << ::testing::PrintToString(lines(result));
    EXPECT_EQ(result.config->endpoint_host, c.host);
    EXPECT_EQ(result.config->endpoint_port, c.port) << c.text;
  }
}

TEST(ParseConfig, BadEndpoints) {
  const auto port_range = only_problem(parse(with_endpoint("dps.example.net:70000")));
  EXPECT_EQ(port_range.key, "provisioning.global_endpoint");
  EXPECT_EQ(port_range.reason, "port 70000 is out of range (1-65535)");
  EXPECT_NE(only_problem(parse(with_endpoint("dps.example.net:0"))).reason.find("out of range"),
            std::string::npos);
  EXPECT_NE(only_problem(parse(with_endpoint("host:https"))).reason.find("not a number"),
            std::string::npos);
  EXPECT_NE(only_problem(parse(with_endpoint("mqtts://host"))).reason.find("not a URL"),
            std::string::npos);
  EXPECT_NE(only_problem(parse(with_endpoint("2001:db8::1"))).reason.find("brackets"),
            std::string::npos);
  EXPECT_EQ(only_problem(parse(with_endpoint(""))).reason, "must not be empty");
  EXPECT_EQ(only_problem(parse(with_endpoint("host/path"))).reason,
            "must be a host name or host:port");
  EXPECT_EQ(only_problem(parse(with_endpoint("[::1"))).reason, "has '[' but no ']'");
}

TEST(ParseConfig, AttestationValues) {
  auto attestation = [](const std::string& lines) {
    return with_dropin("[provisioning.attestation]\n" + lines);
  };
  EXPECT_EQ(only_problem(attestation("method = \"tpm\"")).reason, "\"tpm\" is not supported yet");
  EXPECT_EQ(only_problem(attestation("method = \"psk\"")).reason,
            "must be \"symmetric_key\" or \"x509\" (got \"psk\")");
  EXPECT_EQ(only_problem(attestation("enrollment = \"Group\"")).reason,
            "must be \"individual\" or \"group\" (got \"Group\")");
  EXPECT_EQ(only_problem(attestation("sas_token_lifetime = \"10s\"")).reason,
            "must be at least 1min");
  EXPECT_EQ(only_problem(attestation("sas_token_lifetime = \"90500ms\"")).reason,
            "must be a whole number of seconds");
  EXPECT_EQ(only_problem(attestation("symmetric_key = \"https://vault/key\"")).reason,
            "unsupported URI scheme 'https' (use file:///path or credential:NAME)");
  EXPECT_EQ(only_problem(attestation("symmetric_key = \"file://host/etc/key\"")).reason,
            "file URI must be file:///absolute/path (a host part is not supported)");
  EXPECT_EQ(only_problem(attestation("symmetric_key = \"credential:a/b\"")).reason,
            "credential:NAME needs a plain credential name (no '/')");
  EXPECT_EQ(only_problem(attestation("symmetric_key = \"credential:\"")).reason,
            "credential:NAME needs a plain credential name (no '/')");
}

TEST(ParseConfig, X509AndPkcs11Keys) {
  const auto file_key = parse_fixture("valid_x509_file_key.toml");
  ASSERT_TRUE(file_key.config) << ::testing::PrintToString(lines(file_key));
  EXPECT_EQ(file_key.config->method, AttestationMethod::X509);
  EXPECT_EQ(file_key.config->identity_cert_uri, "file:///etc/dpsd/keys/device.pem");
  EXPECT_EQ(file_key.config->identity_pk_uri, "credential:device-key");

  const auto token_key = parse_fixture("valid_x509_pkcs11_key.toml");
  ASSERT_TRUE(token_key.config) << ::testing::PrintToString(lines(token_key));
  EXPECT_EQ(token_key.config->identity_pk_uri, "pkcs11:token=t;object=k;type=private");
  EXPECT_EQ(*token_key.config->pkcs11_module, "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so");
  EXPECT_EQ(*token_key.config->pkcs11_pin_file, "/etc/dpsd/keys/pin");
  EXPECT_FALSE(token_key.config->pkcs11_pin_credential);

  const auto hmac_key = parse_fixture("valid_pkcs11_symmetric_key.toml");
  ASSERT_TRUE(hmac_key.config) << ::testing::PrintToString(lines(hmac_key));
  EXPECT_EQ(hmac_key.config->symmetric_key_uri, "pkcs11:token=t;object=hmac");
  EXPECT_EQ(*hmac_key.config->pkcs11_pin_credential, "hsm-pin");
  EXPECT_FALSE(hmac_key.config->pkcs11_pin_file);
}

TEST(ParseConfig, Pkcs11KeyProblems) {
  const auto bad_uri = only_problem(with_dropin(
      "[provisioning.attestation]\nsymmetric_key = \"pkcs11:token=t\"\n[pkcs11]\nmodule = "
      "\"/m.so\"\n"));
  EXPECT_EQ(bad_uri.key, "provisioning.attestation.symmetric_key");
  EXPECT_EQ(bad_uri.reason, "pkcs11: URI must name the key with object=LABEL or id=%01…");
  const auto bad_pk = only_problem(with_dropin(
      "[provisioning.attestation]\nmethod = \"x509\"\nidentity_cert = \"file:///c.pem\"\n"
      "identity_pk = \"https://vault/k\"\n"));
  EXPECT_EQ(
      bad_pk.reason,
      "unsupported URI scheme 'https' (use file:///path or credential:NAME) or a pkcs11: URI");
}

// Transports and proxy ------------------------------------------------------------------------

TEST(ParseConfig, TransportValuesAndDefaultPorts) {
  const auto ws = with_dropin("[provisioning]\ntransport = \"mqtt-ws\"\n");
  ASSERT_TRUE(ws.config) << ::testing::PrintToString(lines(ws));
  EXPECT_EQ(ws.config->transport, Transport::MqttWs);
  EXPECT_EQ(ws.config->port(), 443);

  const auto automatic = with_dropin("[provisioning]\ntransport = \"auto\"\n");
  ASSERT_TRUE(automatic.config);
  EXPECT_EQ(automatic.config->transport, Transport::Auto);
  EXPECT_EQ(automatic.config->port(), 8883);  // the first try; 443 is the fallback

  const auto explicit_port = with_dropin(
      "[provisioning]\ntransport = \"mqtt-ws\"\nglobal_endpoint = \"dps.example:8443\"\n");
  ASSERT_TRUE(explicit_port.config);
  EXPECT_EQ(explicit_port.config->port(), 8443);
  EXPECT_EQ(only_problem(with_dropin("[provisioning]\ntransport = 443\n")).key,
            "provisioning.transport");
}

TEST(ParseConfig, WebsocketPort) {
  const auto result =
      with_dropin("[provisioning]\ntransport = \"mqtt-ws\"\nwebsocket_port = 8443\n");
  ASSERT_TRUE(result.config) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.config->websocket_port, 8443);
  EXPECT_EQ(result.config->port(), 8443);
  for (const char* bad : {"0", "65536", "\"443\"", "-1"}) {
    const auto r = with_dropin(std::string("[provisioning]\nwebsocket_port = ") + bad);
    ASSERT_EQ(r.problems.size(), 1u) << bad;
    EXPECT_EQ(r.problems[0].key, "provisioning.websocket_port");
  }
}

TEST(ParseConfig, BadProxyUrlNeverEchoesThePassword) {
  for (const char* url : {"https://user:hunter2@p:1", "http://user:hunter2@p:0",
                          "http://user:hunter2@:1", "http://user:hunter2@p:1/path"}) {
    const auto result = with_dropin(std::string("[proxy]\nurl = \"") + url + "\"\n");
    ASSERT_EQ(result.problems.size(), 1u) << url;
    EXPECT_EQ(result.problems[0].key, "proxy.url");
    EXPECT_EQ(result.problems[0].to_string().find("hunter2"), std::string::npos)
        << result.problems[0].to_string();
  }
  const auto unknown = with_dropin("[proxy]\nhost = \"p\"\n");
  ASSERT_EQ(unknown.problems.size(), 1u);
  EXPECT_EQ(unknown.problems[0].key, "proxy.host");
}

TEST(ParseConfig, ProxyCredentialsKey) {
  const auto ok = parse_fixture("valid_websocket_behind_proxy.toml");
  ASSERT_TRUE(ok.config) << ::testing::PrintToString(lines(ok));
  EXPECT_EQ(ok.config->proxy->host, "proxy.corp");
  EXPECT_EQ(ok.config->proxy_credentials_uri, "credential:proxy");
  EXPECT_FALSE(ok.config->proxy->user);  // filled in by io::load_config()

  const auto off = parse_fixture("valid_proxy_off.toml");
  ASSERT_TRUE(off.config) << ::testing::PrintToString(lines(off));
  EXPECT_FALSE(off.config->proxy);
  EXPECT_TRUE(off.config->proxy_configured);  // "" means direct, not "ask the environment"
  EXPECT_FALSE(off.config->proxy_credentials_uri);
}

// Registration ids: DPS's documented rule -----------------------------------------------------

ConfigResult with_regid(const std::string& regid) {
  return parse("[provisioning]\nid_scope = \"0ne00000000\"\nregistration_id = \"" + regid +
               "\"\n[provisioning.attestation]\nsymmetric_key = \"credential:k\"\n");
}

TEST(ParseConfig, RegistrationIdFollowsTheDocumentedRule) {
  // Case-insensitive at DPS, so upper case is fine (the SDK samples use "myRegistrationId").
  for (const char* good :
       {"myRegistrationId", "GATEWAY-0042", "a", "dev-", "a.b_c:d-e", "0", "-device"}) {
    EXPECT_TRUE(with_regid(good).config)
        << good << ": " << ::testing::PrintToString(lines(with_regid(good)));
  }
  EXPECT_TRUE(with_regid(std::string(128, 'a')).config);
  // "The last character must be alphanumeric or dash".
  for (const char* bad : {"device.", "device_", "device:", "."}) {
    const auto problem = only_problem(with_regid(bad));
    EXPECT_EQ(problem.key, "provisioning.registration_id") << bad;
    EXPECT_EQ(problem.reason.rfind("must end with a letter, a digit or '-'", 0), 0u)
        << bad << ": " << problem.reason;
  }
  const auto too_long = only_problem(with_regid(std::string(129, 'a')));
  EXPECT_EQ(too_long.key, "provisioning.registration_id");
  EXPECT_EQ(too_long.reason, "is 129 characters long; DPS allows at most 128");
  for (const char* bad : {"dev/1", "dev$(id)", "dév", "dev\\t1"}) {
    EXPECT_EQ(only_problem(with_regid(bad)).key, "provisioning.registration_id") << bad;
  }
}

TEST(SameRegistrationId, IgnoresAsciiCaseOnly) {
  EXPECT_TRUE(same_registration_id("Gateway-7", "gateway-7"));
  EXPECT_TRUE(same_registration_id("ABC:d.e_f", "abc:D.E_F"));
  EXPECT_FALSE(same_registration_id("gateway-7", "gateway-8"));
  EXPECT_FALSE(same_registration_id("gateway", "gateway-"));
  EXPECT_FALSE(same_registration_id("[", "{"));  // 0x5B vs 0x7B: only letters fold
}

// payload_file contents -----------------------------------------------------------------------

TEST(PayloadJson, MustBeAnObject) {
  EXPECT_EQ(validate_payload_json(R"({ "a" : [1, 2] })").value(), R"({"a":[1,2]})");
  EXPECT_EQ(validate_payload_json("{}").value(), "{}");
  const std::vector<std::pair<std::string, std::string>> others{{"[1]", "an array"},
                                                                {"\"x\"", "a string"},
                                                                {"42", "a number"},
                                                                {"true", "a boolean"},
                                                                {"null", "null"}};
  for (const auto& [text, kind] : others) {
    auto result = validate_payload_json(text);
    ASSERT_FALSE(result) << text;
    EXPECT_EQ(result.error(), "must hold a JSON object, found " + kind);
  }
}

TEST(PayloadJson, NestingIsBoundedBeforeAnyDomIsBuilt) {
  // 300,000 levels crashed --check-config with a stack overflow before the SAX pass.
  for (const auto& [open, close] : {std::pair{"[", "]"}, std::pair{"{\"a\":", "}"}}) {
    std::string deep = "{\"x\":";
    std::string tail = "}";
    for (int i = 0; i < 300000; ++i) {
      deep += open;
      tail += close;
    }
    deep += "1";
    deep += tail;
    auto result = validate_payload_json(deep);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error(), "is nested deeper than 64 levels");
  }
  std::string ok_depth = "{\"x\":";
  for (std::size_t i = 1; i < kMaxPayloadDepth - 1; ++i) ok_depth += "[";
  ok_depth += "1";
  for (std::size_t i = 1; i < kMaxPayloadDepth - 1; ++i) ok_depth += "]";
  EXPECT_TRUE(validate_payload_json(ok_depth + "}")) << "63 levels must pass";
}

TEST(PayloadJson, SyntaxErrorsSayWhere) {
  auto result = validate_payload_json("{\"a\": }");
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().rfind("is not valid JSON: parse error at line 1, column 7", 0), 0u)
      << result.error();
}

}  // namespace
}  // namespace dpsd::core
