// dpsd's command line as an operator meets it: --check-config, bad keys, bad configs, exit codes.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "support/files.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace dpsd::test {
namespace {

struct CliRun {
  int code = -1;
  std::string out;
  std::string err;
};

CliRun dpsd(std::vector<std::string> args) {
  args.insert(args.begin(), DPSD_BINARY);
  Process p(args);
  CliRun run;
  run.code = p.wait_for_exit(std::chrono::seconds(20)).value_or(-1);
  run.out = p.stdout_text();
  run.err = p.stderr_text();
  return run;
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(dir_ / "device.key", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=\n", 0600);
  }
  std::string config(const std::string& key_path, const std::string& extra = "") const {
    return "[provisioning]\nid_scope = \"0ne00000000\"\nregistration_id = \"dev-1\"\n" + extra +
           "[provisioning.attestation]\nsymmetric_key = \"file://" + key_path +
           "\"\n[paths]\nstate_dir = \"" + (dir_ / "state").string() + "\"\nruntime_dir = \"" +
           (dir_ / "run").string() + "\"\n";
  }
  TempDir dir_{"dpsd-cli"};
};

TEST_F(Cli, CheckConfigAcceptsAGoodConfig) {
  write_file(dir_ / "config.toml", config((dir_ / "device.key").string()));
  const CliRun r = dpsd({"--check-config", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("configuration OK"), std::string::npos);
}

TEST_F(Cli, KeyReadableByOthersIsRefusedNamingPathAndMode) {
  write_file(dir_ / "device.key", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=\n", 0644);
  write_file(dir_ / "config.toml", config((dir_ / "device.key").string()));
  const CliRun r = dpsd({"--check-config", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find((dir_ / "device.key").string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("0644"), std::string::npos) << r.err;
  // The daemon refuses to start with it, too, and never prints the key.
  const CliRun once = dpsd({"--once", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(once.code, 2);
  EXPECT_NE(once.err.find("0644"), std::string::npos) << once.err;
  EXPECT_EQ(once.err.find("c2VjcmV0"), std::string::npos);
}

TEST_F(Cli, EveryProblemIsListedWithFileKeyAndReason) {
  write_file(dir_ / "config.toml",
             "[provisioning]\nid_scope = 42\nregistation_id = \"dev-1\"\n"
             "[provisioning.attestation]\nsymmetric_key = \"http://example/key\"\n"
             "[retry]\ninitial = \"soon\"\n");
  const CliRun r = dpsd({"--check-config", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(r.code, 2);
  const std::string file = (dir_ / "config.toml").string();
  EXPECT_NE(r.err.find(file + ": provisioning.id_scope: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("provisioning.registation_id: unknown key"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("registration_id"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("provisioning.attestation.symmetric_key"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("retry.initial"), std::string::npos) << r.err;
}

TEST_F(Cli, DropInsOverrideTheMainFile) {
  write_file(dir_ / "config.toml", config((dir_ / "device.key").string()));
  std::filesystem::create_directories(dir_ / "config.d");
  write_file(dir_ / "config.d" / "50-typo.toml", "[provisioning]\nid_scop = \"x\"\n");
  const CliRun r = dpsd({"--check-config", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find((dir_ / "config.d" / "50-typo.toml").string() + ": provisioning.id_scop"),
            std::string::npos)
      << r.err;
}

TEST_F(Cli, MissingKeyFileIsAClearError) {
  write_file(dir_ / "config.toml", config((dir_ / "nope.key").string()));
  const CliRun r = dpsd({"--once", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find((dir_ / "nope.key").string()), std::string::npos) << r.err;
}

TEST_F(Cli, ShippedConfigNamesWhatAVendorMustFillIn) {
  const CliRun r =
      dpsd({"--check-config", "--config", std::string(DPSD_SOURCE_DIR) + "/etc/dpsd/config.toml"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("provisioning.id_scope"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("provisioning.registration_id"), std::string::npos) << r.err;
}

TEST_F(Cli, BadArgumentsExitTwoWithUsage) {
  EXPECT_EQ(dpsd({"--bogus"}).code, 2);
  EXPECT_EQ(dpsd({"--once", "--timeout", "x"}).code, 2);
  const CliRun help = dpsd({"--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("Exit status"), std::string::npos);
}

// DPS's documented rule (config.cpp cites it): letters, digits, - . _ :, at most 128, the last
// character a letter, a digit or '-'; case-insensitive, so upper case passes.
TEST_F(Cli, CheckConfigAppliesTheRegistrationIdRule) {
  const auto check = [&](const std::string& regid) {
    std::string text = config((dir_ / "device.key").string());
    const std::string from = "registration_id = \"dev-1\"";
    text.replace(text.find(from), from.size(), "registration_id = \"" + regid + "\"");
    write_file(dir_ / "config.toml", text);
    return dpsd({"--check-config", "--config", (dir_ / "config.toml").string()});
  };
  for (const std::string& bad : {std::string(129, 'a'), std::string("device."),
                                 std::string("dev$(id)"), std::string("dev ice")}) {
    const CliRun r = check(bad);
    EXPECT_EQ(r.code, 2) << bad << ": " << r.err;
    EXPECT_NE(r.err.find("provisioning.registration_id: "), std::string::npos) << r.err;
  }
  for (const std::string& good :
       {std::string(128, 'a'), std::string("Gateway-0042"), std::string("dev-")}) {
    const CliRun r = check(good);
    EXPECT_EQ(r.code, 0) << good << ": " << r.err;
  }
}

// A proxy password in a config others can read is refused like a PIN there, without echoing it.
TEST_F(Cli, CheckConfigRefusesAProxyPasswordInAReadableConfig) {
  write_file(dir_ / "config.toml",
             config((dir_ / "device.key").string()) +
                 "[proxy]\nurl = \"http://u:hunter2@proxy.corp:3128\"\n",
             0644);
  const CliRun r = dpsd({"--check-config", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("proxy.url: credentials in a URL need a config file readable only by its "
                       "owner"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("hunter2"), std::string::npos) << r.err;
  ::chmod((dir_ / "config.toml").c_str(), 0600);
  const CliRun owner_only = dpsd({"--check-config", "--config", (dir_ / "config.toml").string()});
  EXPECT_EQ(owner_only.code, 0) << owner_only.err;
}

}  // namespace
}  // namespace dpsd::test
