// parse_config() with drop-ins: later documents override single keys, every problem names the
// document that set the key, required keys are reported against the main file, and a document
// that cannot be parsed does not stop the others from being checked.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/config.hpp"

namespace dpsd::core {
namespace {

using std::chrono::milliseconds;

constexpr const char* kMain = "/etc/dpsd/config.toml";

const std::string kMinimal = R"(
[provisioning]
id_scope = "0ne00000000"
registration_id = "gateway-0042"
[provisioning.attestation]
symmetric_key = "file:///etc/dpsd/keys/device.key"
)";

std::vector<std::string> lines(const ConfigResult& result) {
  std::vector<std::string> out;
  for (const auto& p : result.problems) out.push_back(p.to_string());
  return out;
}

ConfigProblem only_problem(const ConfigResult& result) {
  EXPECT_EQ(result.problems.size(), 1u) << ::testing::PrintToString(lines(result));
  EXPECT_FALSE(result.config.has_value());
  return result.problems.empty() ? ConfigProblem{} : result.problems.front();
}

// kMinimal as the main file, then `text` as the drop-in 10-a.toml.
ConfigResult with_dropin(const std::string& text) {
  return parse_config({kMain, kMinimal}, {{"10-a.toml", text}});
}

TEST(MergeConfig, LaterDocumentsOverrideSingleKeys) {
  const auto result = parse_config(
      {kMain,
       kMinimal + "[retry]\ninitial = \"1s\"\nmax = \"1min\"\n[paths]\nstate_dir = \"/a\"\n"},
      {{"10-vendor.toml", "[retry]\nmax = \"2min\"\n[tls]\ntrust_bundle = \"/ca.pem\"\n"},
       {"20-site.toml", "[retry]\nmax = \"3min\"\n[tls]\ntrust_bundle = \"\"\n"}});
  ASSERT_TRUE(result.config.has_value()) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.config->retry_initial, milliseconds(1000));  // untouched by the drop-ins
  EXPECT_EQ(result.config->retry_max, milliseconds(180000));    // the last one wins
  EXPECT_EQ(result.config->state_dir, "/a");
  EXPECT_FALSE(result.config->trust_bundle.has_value());  // "" undoes an earlier setting
}

TEST(MergeConfig, RequiredKeysAreReportedAgainstTheMainFile) {
  const auto result = parse_config({kMain, ""}, {{"/etc/dpsd/config.d/10-a.toml", "[retry]"}});
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
  // No drop-ins at all: the same three.
  EXPECT_EQ(parse_config({kMain, ""}).problems.size(), 3u);
}

TEST(MergeConfig, RequiredKeysMayComeFromDropIns) {
  const auto result =
      parse_config({kMain, "[provisioning]\nid_scope = \"0ne00000000\"\n"},
                   {{"10-a.toml", "provisioning.registration_id = \"dev\""},
                    {"20-b.toml", "provisioning.attestation.symmetric_key = \"credential:k\""}});
  ASSERT_TRUE(result.config.has_value()) << ::testing::PrintToString(lines(result));
}

TEST(MergeConfig, SyntaxErrorInOneDropInStillChecksTheOthers) {
  const auto result = parse_config(
      {kMain, kMinimal}, {{"10-bad.toml", "[retry\n"}, {"20-typo.toml", "[retry]\nmaxx = 3\n"}});
  ASSERT_EQ(result.problems.size(), 2u) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.problems[0].file, "10-bad.toml");
  EXPECT_NE(result.problems[0].reason.find("line 1"), std::string::npos);
  EXPECT_EQ(result.problems[1].to_string(),
            "20-typo.toml: retry.maxx: unknown key (did you mean max?)");
}

TEST(MergeConfig, SyntaxErrorInADropInSuppressesRequired) {
  // The "missing" keys may be in the broken drop-in.
  const auto result = parse_config({kMain, ""}, {{"10-bad.toml", "[provisioning\n"}});
  const auto problem = only_problem(result);
  EXPECT_EQ(problem.file, "10-bad.toml");
  EXPECT_EQ(problem.reason.rfind("syntax error at line 1, column ", 0), 0u) << problem.reason;
}

TEST(MergeConfig, ProblemsNameTheDocumentThatSetTheKey) {
  const auto p = only_problem(parse_config(
      {kMain, kMinimal}, {{"10-a.toml", "[paths]\nstate_dir = \"rel\"\n"}, {"20-b.toml", ""}}));
  EXPECT_EQ(p.file, "10-a.toml");
  EXPECT_EQ(p.key, "paths.state_dir");
  EXPECT_EQ(only_problem(with_dropin("[provisioning]\nidscope = \"x\"\n")).to_string(),
            "10-a.toml: provisioning.idscope: unknown key (did you mean id_scope?)");
  EXPECT_EQ(only_problem(with_dropin("[provisioning.attestation]\nmethod = \"tpm\"")).file,
            "10-a.toml");
  EXPECT_EQ(only_problem(with_dropin("tls = 1")).to_string(), "10-a.toml: tls: must be a table");
}

TEST(MergeConfig, ProblemsOfEveryDocumentAreCollected) {
  const auto result =
      parse_config({kMain, kMinimal + "[paths]\nstate_dir = \"relative\"\n"},
                   {{"/etc/dpsd/config.d/50-x.toml", "[network]\nconnect_timeout = 0\n"}});
  EXPECT_EQ(
      lines(result),
      (std::vector<std::string>{
          std::string(kMain) + ": paths.state_dir: must be an absolute path (got \"relative\")",
          "/etc/dpsd/config.d/50-x.toml: network.connect_timeout: must be greater than zero",
      }));
}

TEST(MergeConfig, CrossKeyProblemsNameTheDocumentOfTheKey) {
  // Only max set (below the default initial): the problem is on the key that was written.
  const auto retry = only_problem(with_dropin("retry.max = 1"));
  EXPECT_EQ(retry.file, "10-a.toml");
  EXPECT_EQ(retry.key, "retry.max");
  EXPECT_EQ(retry.reason, "must not be less than retry.initial (2s)");

  const auto module = only_problem(with_dropin(R"([provisioning.attestation]
method = "x509"
identity_cert = "file:///etc/dpsd/keys/device.pem"
identity_pk = "pkcs11:token=t;object=k;type=private"
)"));
  EXPECT_EQ(module.key, "pkcs11.module");
  EXPECT_EQ(module.file, "10-a.toml");  // where the pkcs11: key was set

  const auto group = only_problem(
      parse_config({kMain, kMinimal},
                   {{"10-a.toml",
                     "[provisioning.attestation]\nsymmetric_key = \"pkcs11:token=t;object=hmac\"\n"
                     "[pkcs11]\nmodule = \"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so\"\n"},
                    {"20-b.toml", "[provisioning.attestation]\nenrollment = \"group\"\n"}}));
  EXPECT_EQ(group.key, "provisioning.attestation.enrollment");
  EXPECT_EQ(group.file, "20-b.toml");
  EXPECT_NE(group.reason.find("store the derived device key"), std::string::npos);
}

TEST(MergeConfig, ProxyPasswordOnlyFromAPrivateDocument) {
  // load_config sets private_file from the file's mode.
  const auto result = parse_config(
      {kMain, kMinimal},
      {{"20-proxy.toml", "[proxy]\nurl = \"http://user:s%40cret@proxy.corp:3128\"\n", true}});
  ASSERT_TRUE(result.config) << ::testing::PrintToString(lines(result));
  ASSERT_TRUE(result.config->proxy);
  EXPECT_EQ(result.config->proxy->host, "proxy.corp");
  EXPECT_EQ(result.config->proxy->port, 3128);
  EXPECT_EQ(result.config->proxy->user, "user");
  EXPECT_EQ(result.config->proxy->password, "s@cret");
  EXPECT_EQ(result.config->proxy->display(), "http://user:***@proxy.corp:3128");
  EXPECT_TRUE(result.config->proxy_configured);

  // The document that set url last decides, not the main file.
  const auto overridden = only_problem(
      parse_config({kMain, kMinimal + "[proxy]\nurl = \"http://user:a@p:1\"\n", true},
                   {{"20-proxy.toml", "[proxy]\nurl = \"http://user:hunter2@p:1\"\n"}}));
  EXPECT_EQ(overridden.file, "20-proxy.toml");
  EXPECT_EQ(overridden.key, "proxy.url");
  EXPECT_EQ(overridden.to_string().find("hunter2"), std::string::npos);
  // A user without a password is still a credential; without credentials the URL is fine.
  EXPECT_EQ(only_problem(with_dropin("[proxy]\nurl = \"http://user@p:1\"\n")).key, "proxy.url");
  EXPECT_TRUE(with_dropin("[proxy]\nurl = \"http://proxy.corp:3128\"\n").config);

  const auto both = only_problem(parse_config(
      {kMain, kMinimal},
      {{"20-proxy.toml", "[proxy]\nurl = \"http://u:p@proxy:1\"\ncredentials = \"file:///etc/p\"\n",
        true}}));
  EXPECT_EQ(both.reason,
            "set the proxy user and password either in url or in credentials, not both");
}

TEST(MergeConfig, EmptyProxyUrlInALaterDropInSwitchesTheProxyOff) {
  const auto result =
      parse_config({kMain, kMinimal}, {{"10-proxy.toml", "[proxy]\nurl = \"http://p:1\"\n"},
                                       {"20-direct.toml", "[proxy]\nurl = \"\"\n"}});
  ASSERT_TRUE(result.config) << ::testing::PrintToString(lines(result));
  EXPECT_FALSE(result.config->proxy);
  EXPECT_TRUE(result.config->proxy_configured);  // "" means direct, not "ask the environment"
}

}  // namespace
}  // namespace dpsd::core
