// parse_config() on in-memory documents: merge order, defaults, and one test per kind of problem.
#include <gtest/gtest.h>

#include <algorithm>
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
  return parse_config({{kMain, text}});
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

ConfigProblem problem_with(const std::string& extra) {
  return only_problem(parse(kMinimal + extra));
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
  EXPECT_EQ(c.state_dir, "/var/lib/dpsd");
  EXPECT_EQ(c.runtime_dir, "/run/dpsd");
}

TEST(ParseConfig, FullConfig) {
  const auto result = parse(R"(
[provisioning]
global_endpoint = "dps.example.net:8884"
id_scope = "0ne0012ABCD"
registration_id = "a-b.c_d:e"
payload_file = "/etc/dpsd/payload.json"
[provisioning.attestation]
method = "symmetric_key"
enrollment = "group"
symmetric_key = "credential:dps-key"
sas_token_lifetime = "2h"
[tls]
trust_bundle = "/etc/dpsd/ca.pem"
[network]
connect_timeout = 5
tls_handshake_timeout = "7s"
response_timeout = "1min"
[retry]
initial = "250ms"
max = "10min"
refused = "1d"
[paths]
state_dir = "/data/dpsd"
runtime_dir = "/run/dpsd2"
)");
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

TEST(ParseConfig, DottedKeysAndInlineTablesWork) {
  const auto result = parse(R"(
provisioning.id_scope = "0ne00000000"
provisioning.registration_id = "dev"
provisioning.attestation = { symmetric_key = "credential:k" }
)");
  ASSERT_TRUE(result.config.has_value()) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.config->symmetric_key_uri, "credential:k");
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

TEST(ParseConfig, RequiredKeysAreReportedAgainstTheMainFile) {
  const auto result = parse_config({{kMain, ""}, {"/etc/dpsd/config.d/10-a.toml", "[retry]"}});
  ASSERT_EQ(result.problems.size(), 3u) << ::testing::PrintToString(lines(result));
  EXPECT_FALSE(result.config.has_value());
  const std::vector<std::string> keys{"provisioning.id_scope", "provisioning.registration_id",
                                      "provisioning.attestation.symmetric_key"};
  for (std::size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(result.problems[i].file, kMain);
    EXPECT_EQ(result.problems[i].key, keys[i]);
    EXPECT_EQ(result.problems[i].reason.rfind("is required", 0), 0u) << result.problems[i].reason;
  }
  // The reason tells the operator what to put there.
  EXPECT_NE(result.problems[0].reason.find("ID Scope"), std::string::npos);
}

TEST(ParseConfig, RequiredKeysMayComeFromDropIns) {
  const auto result = parse_config({{kMain, "[provisioning]\nid_scope = \"0ne00000000\"\n"},
                                    {"10-a.toml", "provisioning.registration_id = \"dev\""},
                                    {"20-b.toml",
                                     "provisioning.attestation.symmetric_key = "
                                     "\"credential:k\""}});
  ASSERT_TRUE(result.config.has_value()) << ::testing::PrintToString(lines(result));
}

TEST(ParseConfig, SyntaxErrorHasLineAndColumnAndSuppressesRequired) {
  const auto result = parse("[provisioning]\nid_scope = \"0ne\n");
  const auto problem = only_problem(result);
  EXPECT_EQ(problem.file, kMain);
  EXPECT_EQ(problem.key, "");
  EXPECT_EQ(problem.reason.rfind("syntax error at line 2, column ", 0), 0u) << problem.reason;
}

TEST(ParseConfig, SyntaxErrorInOneDropInStillChecksTheOthers) {
  const auto result = parse_config(
      {{kMain, kMinimal}, {"10-bad.toml", "[retry\n"}, {"20-typo.toml", "[retry]\nmaxx = 3\n"}});
  ASSERT_EQ(result.problems.size(), 2u) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.problems[0].file, "10-bad.toml");
  EXPECT_NE(result.problems[0].reason.find("line 1"), std::string::npos);
  EXPECT_EQ(result.problems[1].to_string(),
            "20-typo.toml: retry.maxx: unknown key (did you mean max?)");
}

TEST(ParseConfig, UnknownKeysWithHints) {
  const auto scope = only_problem(
      parse_config({{kMain, kMinimal}, {"10-a.toml", "[provisioning]\nidscope = \"x\"\n"}}));
  EXPECT_EQ(scope.to_string(),
            "10-a.toml: provisioning.idscope: unknown key (did you mean "
            "id_scope?)");
  // Redefining [provisioning] in one document is a TOML error, so these use other tables.
  EXPECT_EQ(problem_with("[network]\nconect_timeout = 3\n").reason,
            "unknown key (did you mean connect_timeout?)");
  EXPECT_EQ(problem_with("[retry]\nstate_dir = \"/x\"\n").reason,
            "unknown key (did you mean state_dir in [paths]?)");
  EXPECT_EQ(problem_with("[netwrok]\nconnect_timeout = 3\n").reason,
            "unknown key (did you mean [network]?)");
  EXPECT_EQ(problem_with("[logging]\nlevel = \"debug\"\n").reason, "unknown key");
  EXPECT_EQ(problem_with("[logging]\nlevel = \"debug\"\n").key, "logging");
  EXPECT_EQ(problem_with("[tls]\nverify = false\n").reason, "unknown key");
}

TEST(ParseConfig, WrongTypes) {
  const auto not_string = parse(R"(
[provisioning]
id_scope = 42
registration_id = "dev"
[provisioning.attestation]
symmetric_key = "credential:k"
)");
  const auto p = only_problem(not_string);
  EXPECT_EQ(p.to_string(), std::string(kMain) + ": provisioning.id_scope: must be a string");
  EXPECT_EQ(problem_with("[paths]\nstate_dir = [\"/a\"]\n").reason, "must be a string");
  const auto not_table = only_problem(parse_config({{kMain, kMinimal}, {"10-a.toml", "tls = 1"}}));
  EXPECT_EQ(not_table.key, "tls");
  EXPECT_EQ(not_table.reason, "must be a table");
  EXPECT_EQ(problem_with("[provisioning.attestation.x]\n").reason, "unknown key");
  EXPECT_EQ(problem_with("[[retry]]\n").reason, "must be a table");
  EXPECT_EQ(problem_with("[retry]\ninitial = 1.5\n").reason.rfind("must be a duration", 0), 0u);
  EXPECT_EQ(problem_with("[retry]\ninitial = true\n").reason.rfind("must be a duration", 0), 0u);
}

TEST(ParseConfig, InvalidValues) {
  const auto empty_scope = only_problem(parse(R"(
[provisioning]
id_scope = ""
registration_id = "dev"
[provisioning.attestation]
symmetric_key = "credential:k"
)"));
  EXPECT_EQ(empty_scope.key, "provisioning.id_scope");
  EXPECT_EQ(empty_scope.reason, "must not be empty");

  const auto space = only_problem(parse(R"(
[provisioning]
id_scope = "0ne00000000"
registration_id = "Gateway 1"
[provisioning.attestation]
symmetric_key = "credential:k"
)"));
  EXPECT_EQ(space.key, "provisioning.registration_id");
  EXPECT_EQ(space.reason,
            "may contain only letters, digits and - . _ : (found a space or non-ASCII character "
            "at position 8)");

  const auto too_long = only_problem(parse(R"(
[provisioning]
id_scope = "0ne00000000"
registration_id = ")" + std::string(129, 'a') +
                                           R"("
[provisioning.attestation]
symmetric_key = "credential:k"
)"));
  EXPECT_EQ(too_long.reason, "is 129 characters long; DPS allows at most 128");

  EXPECT_EQ(problem_with("[paths]\nstate_dir = \"var/lib/dpsd\"\n").reason,
            "must be an absolute path (got \"var/lib/dpsd\")");
  EXPECT_EQ(problem_with("[paths]\nruntime_dir = \"\"\n").key, "paths.runtime_dir");
  EXPECT_EQ(problem_with("[tls]\ntrust_bundle = \"ca.pem\"\n").key, "tls.trust_bundle");
  EXPECT_EQ(problem_with("[network]\nconnect_timeout = \"0s\"\n").reason,
            "must be greater than zero");
  EXPECT_EQ(problem_with("[network]\nresponse_timeout = 0\n").reason, "must be greater than zero");
  EXPECT_EQ(problem_with("[network]\nresponse_timeout = -5\n").reason, "must not be negative");
  EXPECT_EQ(problem_with("[retry]\nrefused = \"soon\"\n").reason,
            "must be a duration: a number of seconds or a string such as \"250ms\", \"30s\", "
            "\"5min\", \"1h\" (got \"soon\")");
}

TEST(ParseConfig, AttestationValues) {
  // [provisioning.attestation] already appears in kMinimal, so these documents stand alone.
  auto attestation = [](const std::string& lines) {
    return parse_config({{kMain, kMinimal}, {"10-a.toml", "[provisioning.attestation]\n" + lines}});
  };
  EXPECT_EQ(only_problem(attestation("method = \"tpm\"")).reason, "\"tpm\" is not supported yet");
  EXPECT_EQ(only_problem(attestation("method = \"tpm\"")).file, "10-a.toml");
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

TEST(ParseConfig, PastedKeyIsNeverEchoed) {
  const std::string key = "c2VjcmV0LWtleS1ieXRlcy0wMTIzNDU2Nzg5YWJjZA==";
  const auto p = only_problem(
      parse_config({{kMain, kMinimal},
                    {"10-a.toml", "[provisioning.attestation]\nsymmetric_key = \"" + key + "\""}}));
  EXPECT_EQ(p.reason.find(key.substr(0, 8)), std::string::npos) << p.reason;
  EXPECT_NE(p.reason.find("not the key itself"), std::string::npos);
}

TEST(ParseConfig, RetryInitialGreaterThanMax) {
  const auto p = problem_with("[retry]\ninitial = \"10min\"\nmax = \"1min\"\n");
  EXPECT_EQ(p.key, "retry.initial");
  EXPECT_EQ(p.reason, "must not be greater than retry.max (1min)");

  // Only max set (below the default initial): the problem is on the key that was written.
  const auto q = only_problem(parse_config({{kMain, kMinimal}, {"10-a.toml", "retry.max = 1"}}));
  EXPECT_EQ(q.file, "10-a.toml");
  EXPECT_EQ(q.key, "retry.max");
  EXPECT_EQ(q.reason, "must not be less than retry.initial (2s)");

  // An invalid value is reported once, not again as a comparison with its default.
  EXPECT_EQ(problem_with("[retry]\ninitial = \"bad\"\nmax = \"1s\"\n").key, "retry.initial");
}

TEST(ParseConfig, CollectsEveryProblem) {
  const auto result =
      parse_config({{kMain, R"(
[provisioning]
id_scope = ""
registration_id = "UPPER!"
colour = "blue"
[provisioning.attestation]
symmetric_key = "http://x"
[paths]
state_dir = "relative"
)"},
                    {"/etc/dpsd/config.d/50-x.toml", "[network]\nconnect_timeout = 0\n"}});
  EXPECT_FALSE(result.config.has_value());
  EXPECT_EQ(
      lines(result),
      (std::vector<std::string>{
          std::string(kMain) + ": provisioning.id_scope: must not be empty",
          std::string(kMain) + ": provisioning.registration_id: may contain only letters, digits "
                               "and - . _ : (found '!' at position 6)",
          std::string(kMain) + ": provisioning.colour: unknown key",
          std::string(kMain) +
              ": provisioning.attestation.symmetric_key: unsupported URI scheme 'http' (use "
              "file:///path or credential:NAME)",
          std::string(kMain) + ": paths.state_dir: must be an absolute path (got \"relative\")",
          "/etc/dpsd/config.d/50-x.toml: network.connect_timeout: must be greater than zero",
      }));
}

TEST(ParseConfig, LaterDocumentsOverrideSingleKeys) {
  const auto result = parse_config({
      {kMain,
       kMinimal + "[retry]\ninitial = \"1s\"\nmax = \"1min\"\n[paths]\nstate_dir = \"/a\"\n"},
      {"10-vendor.toml", "[retry]\nmax = \"2min\"\n[tls]\ntrust_bundle = \"/ca.pem\"\n"},
      {"20-site.toml", "[retry]\nmax = \"3min\"\n[tls]\ntrust_bundle = \"\"\n"},
  });
  ASSERT_TRUE(result.config.has_value()) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.config->retry_initial, milliseconds(1000));  // untouched by the drop-ins
  EXPECT_EQ(result.config->retry_max, milliseconds(180000));    // the last one wins
  EXPECT_EQ(result.config->state_dir, "/a");
  EXPECT_FALSE(result.config->trust_bundle.has_value());  // "" undoes an earlier setting
}

TEST(ParseConfig, ProblemNamesTheDocumentThatSetTheKey) {
  const auto p = only_problem(parse_config(
      {{kMain, kMinimal}, {"10-a.toml", "[paths]\nstate_dir = \"rel\"\n"}, {"20-b.toml", ""}}));
  EXPECT_EQ(p.file, "10-a.toml");
  EXPECT_EQ(p.key, "paths.state_dir");
}

TEST(ParseConfig, NoDocuments) {
  const auto result = parse_config({});
  EXPECT_FALSE(result.config.has_value());
  EXPECT_EQ(result.problems.size(), 3u);
}

TEST(ParseDuration, Forms) {
  EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
  EXPECT_EQ(parse_duration("2s"), milliseconds(2000));
  EXPECT_EQ(parse_duration("5min"), milliseconds(300000));
  EXPECT_EQ(parse_duration("5m"), milliseconds(300000));
  EXPECT_EQ(parse_duration("1h"), milliseconds(3600000));
  EXPECT_EQ(parse_duration("1d"), milliseconds(86400000));
  EXPECT_EQ(parse_duration("1h 30min"), milliseconds(5400000));
  EXPECT_EQ(parse_duration("1h30min"), milliseconds(5400000));
  EXPECT_EQ(parse_duration(" 10 s "), milliseconds(10000));
  EXPECT_EQ(parse_duration("30"), milliseconds(30000));
  EXPECT_EQ(parse_duration("0s"), milliseconds(0));
}

TEST(ParseDuration, Rejects) {
  for (const char* text : {"", " ", "s", "5x", "-1s", "1.5s", "5 minutes", "1h 30", "5S", "1e3s",
                           "99999999999999999999s", "1h,30min"}) {
    EXPECT_EQ(parse_duration(text), std::nullopt) << text;
  }
}

TEST(ParseKeyUri, Forms) {
  auto file = parse_key_uri("file:///etc/dpsd/keys/device.key");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->kind, KeyUri::Kind::File);
  EXPECT_EQ(file->value, "/etc/dpsd/keys/device.key");
  auto credential = parse_key_uri("credential:dps-key");
  ASSERT_TRUE(credential.ok());
  EXPECT_EQ(credential->kind, KeyUri::Kind::Credential);
  EXPECT_EQ(credential->value, "dps-key");
  for (const char* bad : {"file://", "file:///", "file:/etc/key", "file:relative", "credential:..",
                          "pkcs11:token=x", "", "/etc/dpsd/keys/device.key"}) {
    EXPECT_FALSE(parse_key_uri(bad).ok()) << bad;
  }
}

// X.509 and PKCS#11 ----------------------------------------------------------------------------

ConfigResult with_dropin(const std::string& text) {
  return parse_config({{kMain, kMinimal}, {"10-a.toml", text}});
}

TEST(ParseConfig, X509WithFileKey) {
  // kMinimal's symmetric_key stays set (the shipped file has one) and is simply not used.
  const auto result = with_dropin(R"([provisioning.attestation]
method = "x509"
identity_cert = "file:///etc/dpsd/keys/device.pem"
identity_pk = "credential:device-key"
)");
  ASSERT_TRUE(result.config) << (result.problems.empty() ? "" : result.problems[0].to_string());
  EXPECT_EQ(result.config->method, AttestationMethod::X509);
  EXPECT_EQ(result.config->identity_cert_uri, "file:///etc/dpsd/keys/device.pem");
  EXPECT_EQ(result.config->identity_pk_uri, "credential:device-key");
}

TEST(ParseConfig, X509NeedsCertAndKey) {
  const auto result = with_dropin("[provisioning.attestation]\nmethod = \"x509\"\n");
  ASSERT_EQ(result.problems.size(), 2U);
  EXPECT_EQ(result.problems[0].key, "provisioning.attestation.identity_cert");
  EXPECT_EQ(result.problems[0].file, kMain);
  EXPECT_EQ(result.problems[1].key, "provisioning.attestation.identity_pk");
}

TEST(ParseConfig, X509CertMustBeAFile) {
  const auto p = only_problem(with_dropin(R"([provisioning.attestation]
method = "x509"
identity_cert = "credential:cert"
identity_pk = "file:///k"
)"));
  EXPECT_EQ(p.key, "provisioning.attestation.identity_cert");
  EXPECT_EQ(p.reason, "must be file:///absolute/path.pem (the certificate, then its chain)");
}

TEST(ParseConfig, X509Pkcs11KeyNeedsModule) {
  const std::string x509 = R"([provisioning.attestation]
method = "x509"
identity_cert = "file:///etc/dpsd/keys/device.pem"
identity_pk = "pkcs11:token=t;object=k;type=private"
)";
  const auto p = only_problem(with_dropin(x509));
  EXPECT_EQ(p.key, "pkcs11.module");
  EXPECT_EQ(p.file, "10-a.toml");
  const auto ok = with_dropin(x509 + R"([pkcs11]
module = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"
pin_file = "/etc/dpsd/keys/pin"
)");
  ASSERT_TRUE(ok.config);
  EXPECT_EQ(*ok.config->pkcs11_module, "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so");
  EXPECT_EQ(*ok.config->pkcs11_pin_file, "/etc/dpsd/keys/pin");
  EXPECT_FALSE(ok.config->pkcs11_pin_credential);
}

TEST(ParseConfig, Pkcs11PinIsNeverInClear) {
  const auto in_uri = only_problem(with_dropin(
      "[provisioning.attestation]\nsymmetric_key = \"pkcs11:token=t;object=k?pin-value=98761\"\n"
      "[pkcs11]\nmodule = \"/m.so\"\n"));
  EXPECT_EQ(in_uri.key, "provisioning.attestation.symmetric_key");
  EXPECT_NE(in_uri.reason.find("PIN in the pkcs11: URI is refused"), std::string::npos);
  EXPECT_EQ(in_uri.reason.find("98761"), std::string::npos) << in_uri.reason;
  const auto in_table = only_problem(with_dropin("[pkcs11]\npin = \"1234\"\n"));
  EXPECT_EQ(in_table.key, "pkcs11.pin");
  EXPECT_EQ(in_table.reason.find("1234"), std::string::npos);
  EXPECT_NE(in_table.reason.find("pin_file"), std::string::npos);
  const auto both = only_problem(
      with_dropin("[pkcs11]\npin_file = \"/etc/dpsd/keys/pin\"\npin_credential = \"pin\"\n"));
  EXPECT_EQ(both.reason, "set either pin_file or pin_credential, not both");
  EXPECT_EQ(only_problem(with_dropin("[pkcs11]\npin_credential = \"a/b\"\n")).reason,
            "must be a plain credential name (no '/')");
}

TEST(ParseConfig, Pkcs11SymmetricKeyIndividualOnly) {
  const std::string key = R"([provisioning.attestation]
symmetric_key = "pkcs11:token=t;object=hmac"
[pkcs11]
module = "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so"
pin_credential = "hsm-pin"
)";
  const auto ok = with_dropin(key);
  ASSERT_TRUE(ok.config);
  EXPECT_EQ(ok.config->symmetric_key_uri, "pkcs11:token=t;object=hmac");
  EXPECT_EQ(*ok.config->pkcs11_pin_credential, "hsm-pin");
  const auto group = only_problem(
      parse_config({{kMain, kMinimal},
                    {"10-a.toml", key},
                    {"20-b.toml", "[provisioning.attestation]\nenrollment = \"group\"\n"}}));
  EXPECT_EQ(group.key, "provisioning.attestation.enrollment");
  EXPECT_EQ(group.file, "20-b.toml");
  EXPECT_NE(group.reason.find("store the derived device key"), std::string::npos);
}

TEST(ParsePkcs11Uri, Forms) {
  auto uri = parse_pkcs11_uri("pkcs11:token=My%20Token;object=k;id=%01%ff;type=secret-key");
  ASSERT_TRUE(uri) << uri.error();
  EXPECT_EQ(uri->path.at("token"), "My Token");
  EXPECT_EQ(uri->path.at("object"), "k");
  EXPECT_EQ(uri->path.at("id"), std::string("\x01\xff", 2));
  EXPECT_EQ(uri->text, "pkcs11:token=My%20Token;object=k;id=%01%ff;type=secret-key");
  EXPECT_FALSE(parse_pkcs11_uri("pkcs11:token=t"));  // names no key
  EXPECT_EQ(parse_pkcs11_uri("pkcs11:token=t;color=red;object=k").error(),
            "pkcs11: URI has unknown attribute \"color\" (RFC 7512)");
  EXPECT_EQ(parse_pkcs11_uri("pkcs11:object=k;object=j").error(),
            "pkcs11: URI has attribute \"object\" twice");
  EXPECT_EQ(parse_pkcs11_uri("pkcs11:object=%zz").error(),
            "pkcs11: URI attribute \"object\" has a bad %-escape");
  EXPECT_FALSE(parse_pkcs11_uri("pkcs11:object=k?module-path=/x.so"));
  EXPECT_FALSE(parse_pkcs11_uri("file:///k"));
}

// Transports and proxy ------------------------------------------------------------------------

ConfigResult with_transport_dropin(const std::string& text) {
  return parse_config({{kMain, kMinimal}, {"20-transport.toml", text}});
}

TEST(ParseConfig, TransportDefaultsToMqttOn8883) {
  const auto result = parse(kMinimal);
  ASSERT_TRUE(result.config);
  EXPECT_EQ(result.config->transport, Transport::Mqtt);
  EXPECT_EQ(result.config->port(), 8883);
  EXPECT_FALSE(result.config->proxy);
  EXPECT_FALSE(result.config->proxy_configured);  // the environment decides
}

TEST(ParseConfig, TransportValuesAndDefaultPorts) {
  const auto ws = with_transport_dropin("[provisioning]\ntransport = \"mqtt-ws\"\n");
  ASSERT_TRUE(ws.config) << ::testing::PrintToString(lines(ws));
  EXPECT_EQ(ws.config->transport, Transport::MqttWs);
  EXPECT_EQ(ws.config->port(), 443);

  const auto automatic = with_transport_dropin("[provisioning]\ntransport = \"auto\"\n");
  ASSERT_TRUE(automatic.config);
  EXPECT_EQ(automatic.config->transport, Transport::Auto);
  EXPECT_EQ(automatic.config->port(), 8883);  // the first try; 443 is the fallback

  const auto explicit_port = with_transport_dropin(
      "[provisioning]\ntransport = \"mqtt-ws\"\nglobal_endpoint = \"dps.example:8443\"\n");
  ASSERT_TRUE(explicit_port.config);
  EXPECT_EQ(explicit_port.config->port(), 8443);
}

TEST(ParseConfig, WebsocketPort) {
  const auto result =
      with_transport_dropin("[provisioning]\ntransport = \"mqtt-ws\"\nwebsocket_port = 8443\n");
  ASSERT_TRUE(result.config) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.config->websocket_port, 8443);
  EXPECT_EQ(result.config->port(), 8443);
  for (const char* bad : {"0", "65536", "\"443\"", "-1"}) {
    const auto r = with_transport_dropin(std::string("[provisioning]\nwebsocket_port = ") + bad);
    ASSERT_EQ(r.problems.size(), 1u) << bad;
    EXPECT_EQ(r.problems[0].key, "provisioning.websocket_port");
  }
}

TEST(ParseConfig, BadTransport) {
  const auto upper = with_transport_dropin("[provisioning]\ntransport = \"MQTT\"\n");
  ASSERT_EQ(upper.problems.size(), 1u);
  EXPECT_EQ(upper.problems[0].to_string(),
            "20-transport.toml: provisioning.transport: must be \"mqtt\", \"mqtt-ws\" or "
            "\"auto\" (got \"MQTT\")");
  const auto number = with_transport_dropin("[provisioning]\ntransport = 443\n");
  ASSERT_EQ(number.problems.size(), 1u);
  EXPECT_EQ(number.problems[0].key, "provisioning.transport");
}

TEST(ParseConfig, ProxyUrl) {
  // From a private drop-in (load_config sets private_file from the file's mode).
  const auto result = parse_config(
      {{kMain, kMinimal},
       {"20-transport.toml", "[proxy]\nurl = \"http://user:s%40cret@proxy.corp:3128\"\n", true}});
  ASSERT_TRUE(result.config) << ::testing::PrintToString(lines(result));
  ASSERT_TRUE(result.config->proxy);
  EXPECT_EQ(result.config->proxy->host, "proxy.corp");
  EXPECT_EQ(result.config->proxy->port, 3128);
  EXPECT_EQ(result.config->proxy->user, "user");
  EXPECT_EQ(result.config->proxy->password, "s@cret");
  EXPECT_EQ(result.config->proxy->display(), "http://user:***@proxy.corp:3128");
  EXPECT_TRUE(result.config->proxy_configured);
}

TEST(ParseConfig, EmptyProxyUrlInALaterDropInSwitchesTheProxyOff) {
  const auto result = parse_config({{kMain, kMinimal},
                                    {"10-proxy.toml", "[proxy]\nurl = \"http://p:1\"\n"},
                                    {"20-direct.toml", "[proxy]\nurl = \"\"\n"}});
  ASSERT_TRUE(result.config) << ::testing::PrintToString(lines(result));
  EXPECT_FALSE(result.config->proxy);
  EXPECT_TRUE(result.config->proxy_configured);  // "" means direct, not "ask the environment"
}

TEST(ParseConfig, BadProxyUrlNeverEchoesThePassword) {
  for (const char* url : {"https://user:hunter2@p:1", "http://user:hunter2@p:0",
                          "http://user:hunter2@:1", "http://user:hunter2@p:1/path"}) {
    const auto result = with_transport_dropin(std::string("[proxy]\nurl = \"") + url + "\"\n");
    ASSERT_EQ(result.problems.size(), 1u) << url;
    EXPECT_EQ(result.problems[0].key, "proxy.url");
    EXPECT_EQ(result.problems[0].to_string().find("hunter2"), std::string::npos)
        << result.problems[0].to_string();
  }
  const auto unknown = with_transport_dropin("[proxy]\nhost = \"p\"\n");
  ASSERT_EQ(unknown.problems.size(), 1u);
  EXPECT_EQ(unknown.problems[0].key, "proxy.host");
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
    auto result = validate_payload_json(deep + "1" + tail);
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

// Proxy credentials ---------------------------------------------------------------------------

TEST(ParseConfig, ProxyPasswordInAWorldReadableConfigIsRefused) {
  // parse_config() without private_file: the default, as for the shipped 0644 config.
  const auto result =
      with_transport_dropin("[proxy]\nurl = \"http://user:hunter2@proxy.corp:3128\"\n");
  const auto problem = only_problem(result);
  EXPECT_EQ(problem.file, "20-transport.toml");
  EXPECT_EQ(problem.key, "proxy.url");
  EXPECT_EQ(problem.reason,
            "credentials in a URL need a config file readable only by its owner (mode 0600, or "
            "0640 with group dpsd); or use [proxy] credentials = \"file:///…\" or "
            "\"credential:NAME\"");
  EXPECT_EQ(problem.to_string().find("hunter2"), std::string::npos);
  // A user without a password is still a credential.
  EXPECT_EQ(only_problem(with_transport_dropin("[proxy]\nurl = \"http://user@p:1\"\n")).key,
            "proxy.url");
  // Without credentials the URL is fine anywhere.
  EXPECT_TRUE(with_transport_dropin("[proxy]\nurl = \"http://proxy.corp:3128\"\n").config);
}

TEST(ParseConfig, ProxyCredentialsKey) {
  const auto ok = with_transport_dropin(
      "[proxy]\nurl = \"http://proxy.corp:3128\"\ncredentials = \"credential:proxy\"\n");
  ASSERT_TRUE(ok.config) << ::testing::PrintToString(lines(ok));
  EXPECT_EQ(ok.config->proxy_credentials_uri, "credential:proxy");
  EXPECT_FALSE(ok.config->proxy->user);  // filled in by load_config()

  EXPECT_EQ(
      only_problem(with_transport_dropin("[proxy]\ncredentials = \"file:///etc/p\"\n")).reason,
      "needs [proxy] url (the proxy the credentials are for)");
  EXPECT_EQ(only_problem(parse_config({{kMain, kMinimal},
                                       {"20-transport.toml",
                                        "[proxy]\nurl = \"http://u:p@proxy:1\"\ncredentials = "
                                        "\"file:///etc/p\"\n",
                                        true}}))
                .reason,
            "set the proxy user and password either in url or in credentials, not both");
  const auto bad = only_problem(
      with_transport_dropin("[proxy]\nurl = \"http://p:1\"\ncredentials = \"user:hunter2\"\n"));
  EXPECT_EQ(bad.key, "proxy.credentials");
  EXPECT_EQ(bad.to_string().find("hunter2"), std::string::npos) << bad.to_string();
}

}  // namespace
}  // namespace dpsd::core
