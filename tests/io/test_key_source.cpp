// Key sources and load_config() against real files in a temp directory: modes and groups, symlinks,
// FIFOs, systemd credentials, drop-in order and the payload file.
#include <grp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "io/config_files.hpp"
#include "io/key_source.hpp"

namespace dpsd {
namespace {

namespace fs = std::filesystem;

// A 32-byte key as the Azure portal shows it.
constexpr const char* kKey = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";

// Kept local so these tests do not depend on the shared fixture library.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (fs::temp_directory_path() / "dpsd-key-source-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  fs::path operator/(const std::string& name) const { return path_ / name; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

fs::path write(const fs::path& path, const std::string& text, mode_t mode = 0600) {
  fs::create_directories(path.parent_path());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
  EXPECT_EQ(::chmod(path.c_str(), mode), 0);
  return path;
}

std::string file_uri(const fs::path& path) {
  return "file://" + path.string();
}

// Sets or clears $CREDENTIALS_DIRECTORY for one test and puts the old value back.
class CredentialsDirectory {
 public:
  explicit CredentialsDirectory(const std::optional<std::string>& value) {
    if (const char* old = std::getenv("CREDENTIALS_DIRECTORY")) old_ = old;
    if (value) {
      ::setenv("CREDENTIALS_DIRECTORY", value->c_str(), 1);
    } else {
      ::unsetenv("CREDENTIALS_DIRECTORY");
    }
  }
  ~CredentialsDirectory() {
    if (old_) {
      ::setenv("CREDENTIALS_DIRECTORY", old_->c_str(), 1);
    } else {
      ::unsetenv("CREDENTIALS_DIRECTORY");
    }
  }
  CredentialsDirectory(const CredentialsDirectory&) = delete;
  CredentialsDirectory& operator=(const CredentialsDirectory&) = delete;

 private:
  std::optional<std::string> old_;
};

TEST(KeySource, PrivateFileLoadsTrimmed) {
  ScratchDir dir;
  const auto path = write(dir / "device.key", std::string("  ") + kKey + "\n\n");
  auto key = io::load_key(file_uri(path));
  ASSERT_TRUE(key.ok()) << key.error();
  EXPECT_EQ(key->view(), kKey);
  EXPECT_TRUE(io::check_key_source(file_uri(path)).ok());
  // The portal also shows 64-byte keys.
  const auto long_key = write(
      dir / "long.key", std::string(kKey).substr(0, 43) + std::string(kKey).substr(0, 43) + "A=");
  EXPECT_TRUE(io::check_key_source(file_uri(long_key)).ok())
      << io::check_key_source(file_uri(long_key)).error();
}

TEST(KeySource, OtherReadableFileIsRefusedWithPathAndMode) {
  ScratchDir dir;
  const auto path = write(dir / "device.key", kKey, 0644);
  const std::string expected = "key file " + path.string() +
                               " has mode 0644; it must not be readable or writable by others "
                               "(chmod o-rwx " +
                               path.string() + ")";
  auto key = io::load_key(file_uri(path));
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.error(), expected);
  auto status = io::check_key_source(file_uri(path));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error(), expected);
}

TEST(KeySource, OtherWritableFileIsRefused) {
  ScratchDir dir;
  const auto path = write(dir / "device.key", kKey, 0602);
  auto status = io::check_key_source(file_uri(path));
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().find("has mode 0602"), std::string::npos) << status.error();
}

// 0640 with the daemon's own group: the packaged layout for a root-owned key (root:dpsd).
TEST(KeySource, GroupReadableByOwnGroupLoads) {
  ScratchDir dir;
  const auto path = write(dir / "device.key", kKey, 0640);
  ASSERT_EQ(::chown(path.c_str(), static_cast<uid_t>(-1), ::getegid()), 0);
  auto key = io::load_key(file_uri(path));
  ASSERT_TRUE(key.ok()) << key.error();
  EXPECT_EQ(key->view(), kKey);
  EXPECT_TRUE(io::check_key_source(file_uri(path)).ok());
}

TEST(KeySource, GroupWritableOrExecutableFileIsRefused) {
  ScratchDir dir;
  for (mode_t mode : {mode_t{0660}, mode_t{0620}, mode_t{0650}}) {
    const auto path = write(dir / "device.key", kKey, mode);
    ASSERT_EQ(::chown(path.c_str(), static_cast<uid_t>(-1), ::getegid()), 0);
    auto status = io::check_key_source(file_uri(path));
    ASSERT_FALSE(status.ok()) << std::oct << mode;
    char text[8];
    (void)std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode));
    EXPECT_EQ(status.error(), "key file " + path.string() + " has mode " + text +
                                  "; it must not be writable by its group (chmod 640 " +
                                  path.string() + ")");
  }
}

// A group the process is not in: only root can give a file away to such a group.
gid_t foreign_gid() {
  std::vector<gid_t> groups(static_cast<std::size_t>(std::max(::getgroups(0, nullptr), 0)));
  if (!groups.empty())
    groups.resize(
        static_cast<std::size_t>(::getgroups(static_cast<int>(groups.size()), groups.data())));
  for (gid_t candidate = 65534; candidate > 60000; --candidate) {
    if (candidate != ::getegid() &&
        std::find(groups.begin(), groups.end(), candidate) == groups.end()) {
      return candidate;
    }
  }
  return 0;
}

TEST(KeySource, GroupReadableByForeignGroupIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chgrp a file to a group we are not in";
  ScratchDir dir;
  const gid_t gid = foreign_gid();
  const auto path = write(dir / "device.key", kKey, 0640);
  ASSERT_EQ(::chown(path.c_str(), static_cast<uid_t>(-1), gid), 0);
  auto status = io::check_key_source(file_uri(path));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error(), "key file " + path.string() +
                                " has mode 0640; it is readable by group " + std::to_string(gid) +
                                ", which dpsd does not run as; make it readable by dpsd's group "
                                "only (chgrp) or by its owner only (chmod 600 " +
                                path.string() + ")");
}

// The same file is accepted by a process that has the group as a supplementary group (how an
// operator in group dpsd runs `dpsd --check-config`). Checked in a child so the test process
// keeps its groups.
TEST(KeySource, GroupReadableBySupplementaryGroupLoads) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to set supplementary groups";
  ScratchDir dir;
  const gid_t gid = foreign_gid();
  const auto path = write(dir / "device.key", kKey, 0640);
  ASSERT_EQ(::chown(path.c_str(), static_cast<uid_t>(-1), gid), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgroups(1, &gid) != 0) ::_exit(3);
    ::_exit(io::check_key_source(file_uri(path)).ok() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(KeySource, SymlinkIsRefused) {
  ScratchDir dir;
  const auto target = write(dir / "real.key", kKey);
  const auto link = dir / "device.key";
  fs::create_symlink(target, link);
  auto status = io::check_key_source(file_uri(link));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().rfind("key file " + link.string() + " is a symbolic link", 0), 0u)
      << status.error();
}

TEST(KeySource, MissingFile) {
  ScratchDir dir;
  const auto path = dir / "absent.key";
  auto status = io::check_key_source(file_uri(path));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error(),
            "cannot open key file " + path.string() + ": No such file or directory");
}

TEST(KeySource, DirectoryAndFifoAreNotKeys) {
  ScratchDir dir;
  auto directory = io::check_key_source(file_uri(dir.path()));
  ASSERT_FALSE(directory.ok());
  EXPECT_EQ(directory.error(),
            "key file " + dir.path().string() + " is a directory, not a regular file");

  // Opening a FIFO with no writer would block a naive reader forever.
  const auto fifo = dir / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto status = io::check_key_source(file_uri(fifo));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error(), "key file " + fifo.string() + " is a FIFO, not a regular file");
}

TEST(KeySource, EmptyFile) {
  ScratchDir dir;
  for (const char* text : {"", " \n\t\n"}) {
    const auto path = write(dir / "device.key", text);
    auto status = io::check_key_source(file_uri(path));
    ASSERT_FALSE(status.ok());
    EXPECT_EQ(status.error(), "key file " + path.string() + " is empty");
  }
}

TEST(KeySource, BadBase64NeverShowsTheKey) {
  ScratchDir dir;
  const std::string secretish = "not!base64_butSecret0123456789abcdefghijklm=";
  const auto path = write(dir / "device.key", secretish);
  auto status = io::check_key_source(file_uri(path));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error(), "key file " + path.string() +
                                " is not valid base64 (unexpected character at position 4)");
  EXPECT_EQ(status.error().find("Secret"), std::string::npos);

  write(path, "abc");
  EXPECT_NE(io::check_key_source(file_uri(path)).error().find("not a multiple of 4"),
            std::string::npos);
  write(path, std::string(kKey).substr(0, 12) + " " + std::string(kKey).substr(13));
  EXPECT_NE(io::check_key_source(file_uri(path)).error().find("not valid base64"),
            std::string::npos);
  write(path, "c2hvcnQ=");  // "short": 5 bytes
  EXPECT_EQ(
      io::check_key_source(file_uri(path)).error(),
      "key file " + path.string() + " is too short for a DPS key (5 bytes; at least 16 expected)");
}

TEST(KeySource, HugeFileIsNotAKey) {
  ScratchDir dir;
  const auto path = write(dir / "device.key", std::string(10000, 'A'));
  auto status = io::check_key_source(file_uri(path));
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().find("does not look like a key"), std::string::npos);
}

TEST(KeySource, BadUris) {
  EXPECT_EQ(io::check_key_source("http://example.com/key").error(),
            "unsupported URI scheme 'http' (use file:///path or credential:NAME)");
  EXPECT_EQ(io::check_key_source("file://host/etc/key").error(),
            "file URI must be file:///absolute/path (a host part is not supported)");
  const auto pasted = io::check_key_source(kKey);
  ASSERT_FALSE(pasted.ok());
  EXPECT_EQ(pasted.error().find(std::string(kKey).substr(0, 10)), std::string::npos);
}

TEST(KeySource, CredentialFromCredentialsDirectory) {
  ScratchDir dir;
  // systemd owns the credentials directory and its modes: 0644 is not refused here.
  write(dir / "dps-key", std::string(kKey) + "\n", 0644);
  CredentialsDirectory env(dir.path().string());
  auto key = io::load_key("credential:dps-key");
  ASSERT_TRUE(key.ok()) << key.error();
  EXPECT_EQ(key->view(), kKey);

  auto missing = io::check_key_source("credential:other");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error(), "cannot open credential 'other' (" + (dir / "other").string() +
                                 "): No such file or directory");
}

TEST(KeySource, CredentialWithoutCredentialsDirectory) {
  CredentialsDirectory env(std::nullopt);
  auto status = io::check_key_source("credential:dps-key");
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(
      status.error().rfind("credential 'dps-key' not found: $CREDENTIALS_DIRECTORY is not set", 0),
      0u)
      << status.error();
}

TEST(SecretText, MoveLeavesSourceEmpty) {
  io::SecretText a{std::string(kKey)};
  io::SecretText b(std::move(a));
  EXPECT_EQ(b.view(), kKey);
  EXPECT_TRUE(a.view().empty());  // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
  io::SecretText c{std::string("short")};
  c = std::move(b);
  EXPECT_EQ(c.view(), kKey);
  EXPECT_TRUE(b.view().empty());  // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
}

// ---------------------------------------------------------------------------------------------
// load_config() with real files.

constexpr const char* kRequired = R"(
[provisioning]
id_scope = "0ne00000000"
registration_id = "gateway-0042"
[provisioning.attestation]
symmetric_key = "credential:dps-key"
)";

std::vector<std::string> lines(const core::ConfigResult& result) {
  std::vector<std::string> out;
  for (const auto& p : result.problems) out.push_back(p.to_string());
  return out;
}

TEST(LoadConfig, DropInsApplyInLexicalOrderAndOtherNamesAreIgnored) {
  ScratchDir dir;
  const auto main =
      write(dir / "config.toml", std::string(kRequired) + "[retry]\nmax = \"1min\"\n");
  write(dir / "config.d/20-site.toml", "[retry]\nmax = \"3min\"\n");
  write(dir / "config.d/10-vendor.toml", "[retry]\nmax = \"2min\"\ninitial = \"3s\"\n");
  write(dir / "config.d/README", "not toml at all [");
  write(dir / "config.d/30-old.toml.bak", "not toml at all [");
  write(dir / "config.d/.#20-site.toml", "not toml at all [");
  fs::create_directories(dir / "config.d/README.d");
  const auto result = io::load_config(main);
  ASSERT_TRUE(result.config.has_value()) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.config->retry_max, std::chrono::minutes(3));
  EXPECT_EQ(result.config->retry_initial, std::chrono::seconds(3));
}

TEST(LoadConfig, ProblemsNameTheDropIn) {
  ScratchDir dir;
  const auto main = write(dir / "config.toml", kRequired);
  const auto dropin = write(dir / "config.d/50-x.toml", "[paths]\nstate_dir = \"relative\"\n");
  const auto result = io::load_config(main);
  ASSERT_EQ(result.problems.size(), 1u);
  EXPECT_EQ(result.problems[0].file, dropin.string());
  EXPECT_EQ(result.problems[0].key, "paths.state_dir");
}

TEST(LoadConfig, MissingMainFileIsFineWhenDropInsSupplyEverything) {
  ScratchDir dir;
  write(dir / "config.d/10-device.toml", kRequired);
  const auto result = io::load_config(dir / "config.toml");
  EXPECT_TRUE(result.config.has_value()) << ::testing::PrintToString(lines(result));
}

TEST(LoadConfig, MissingMainFileIsReportedWhenKeysAreMissing) {
  ScratchDir dir;
  const auto main = dir / "config.toml";
  const auto result = io::load_config(main);
  ASSERT_EQ(result.problems.size(), 4u) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.problems[0].to_string(),
            main.string() + ": cannot open: No such file or directory");
  EXPECT_EQ(result.problems[1].key, "provisioning.id_scope");
  EXPECT_EQ(result.problems[1].file, main.string());
}

TEST(LoadConfig, UnreadableMainFileIsAlwaysAProblem) {
  ScratchDir dir;
  fs::create_directories(dir / "config.toml");
  write(dir / "config.d/10-device.toml", kRequired);
  const auto result = io::load_config(dir / "config.toml");
  ASSERT_EQ(result.problems.size(), 1u) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.problems[0].to_string(),
            (dir / "config.toml").string() + ": is a directory, not a regular file");
}

TEST(LoadConfig, UnreadableDropInDoesNotClaimKeysAreMissing) {
  ScratchDir dir;
  const auto main = write(dir / "config.toml", "[retry]\nmax = \"1min\"\n");
  fs::create_directories(dir / "config.d");
  fs::create_symlink(dir / "nowhere.toml", dir / "config.d/10-device.toml");
  const auto result = io::load_config(main);
  ASSERT_EQ(result.problems.size(), 1u) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.problems[0].to_string(),
            (dir / "config.d/10-device.toml").string() +
                ": is a symbolic link; refusing to follow it (name the file itself)");
}

TEST(LoadConfig, PayloadFileIsReadAsCompactJson) {
  ScratchDir dir;
  const auto payload =
      write(dir / "payload.json", "{ \"model\" : \"gw-1\",\n \"slots\": [1, 2] }\n");
  const auto main = write(dir / "config.toml", std::string(kRequired));
  write(dir / "config.d/10-payload.toml",
        "[provisioning]\npayload_file = \"" + payload.string() + "\"\n");
  const auto result = io::load_config(main);
  ASSERT_TRUE(result.config.has_value()) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.config->payload_file, payload);
  EXPECT_EQ(result.config->payload_json, R"({"model":"gw-1","slots":[1,2]})");
}

TEST(LoadConfig, PayloadFileProblemsNameTheFile) {
  ScratchDir dir;
  const auto payload = dir / "payload.json";
  const auto main = write(dir / "config.toml", std::string(kRequired));
  write(dir / "config.d/10-payload.toml",
        "[provisioning]\npayload_file = \"" + payload.string() + "\"\n");

  auto missing = io::load_config(main);
  ASSERT_EQ(missing.problems.size(), 1u) << ::testing::PrintToString(lines(missing));
  EXPECT_FALSE(missing.config.has_value());
  EXPECT_EQ(
      missing.problems[0].to_string(),
      payload.string() + ": provisioning.payload_file: cannot open: No such file or directory");

  write(payload, "{\"model\": gw-1}");
  auto invalid = io::load_config(main);
  ASSERT_EQ(invalid.problems.size(), 1u) << ::testing::PrintToString(lines(invalid));
  EXPECT_EQ(invalid.problems[0].file, payload.string());
  EXPECT_EQ(invalid.problems[0].reason.rfind("is not valid JSON: parse error at line 1", 0), 0u)
      << invalid.problems[0].reason;
}

// The shipped file must parse, and on a fresh install must ask for exactly what the operator
// has to fill in.
TEST(LoadConfig, ShippedConfigAsksOnlyForIdScopeAndRegistrationId) {
  ScratchDir dir;
  const auto copy = dir / "config.toml";
  fs::copy_file(fs::path(DPSD_SOURCE_DIR) / "etc/dpsd/config.toml", copy);
  const auto result = io::load_config(copy);
  ASSERT_EQ(lines(result),
            (std::vector<std::string>{
                copy.string() +
                    ": provisioning.id_scope: is required: set it to the ID Scope of your DPS "
                    "instance (Azure portal, the DPS resource's Overview page, e.g. "
                    "\"0ne0012ABCD\")",
                copy.string() +
                    ": provisioning.registration_id: is required: set it to this device's "
                    "registration ID in the DPS enrollment (letters, digits and - . _ :, e.g. "
                    "\"gateway-0042\")",
            }));

  // Uncommenting the examples is enough to get a complete configuration.
  write(dir / "config.d/10-device.toml",
        "[provisioning]\nid_scope = \"0ne0012ABCD\"\nregistration_id = \"gateway-0042\"\n");
  const auto filled = io::load_config(copy);
  ASSERT_TRUE(filled.config.has_value()) << ::testing::PrintToString(lines(filled));
  const core::Config defaults;
  EXPECT_EQ(filled.config->symmetric_key_uri, "file:///etc/dpsd/keys/device.key");
  EXPECT_EQ(filled.config->retry_max, defaults.retry_max);
  EXPECT_EQ(filled.config->state_dir, defaults.state_dir);
}

// Every commented-out default in the shipped file, uncommented, is accepted and equals the
// built-in default, so the file's documentation cannot drift from the code.
TEST(LoadConfig, ShippedDefaultsMatchTheCode) {
  ScratchDir dir;
  std::ifstream in(fs::path(DPSD_SOURCE_DIR) / "etc/dpsd/config.toml");
  std::string text;
  for (std::string line; std::getline(in, line);) {
    if (line.size() > 1 && line[0] == '#' && line[1] != ' ' &&
        line.find(" = ") != std::string::npos) {
      line.erase(0, 1);
    }
    text += line + "\n";
  }
  const auto main = write(dir / "config.toml", text);
  const auto result = io::load_config(main);
  // payload_file points at an example file that does not exist here; everything else is fine.
  ASSERT_EQ(result.problems.size(), 1u) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.problems[0].key, "provisioning.payload_file");

  fs::create_directories(dir / "config.d");
  write(dir / "config.d/10.toml",
        "[provisioning]\npayload_file = \"\"\n[tls]\ntrust_bundle = \"\"\n");
  const auto parsed = io::load_config(main);
  ASSERT_TRUE(parsed.config.has_value()) << ::testing::PrintToString(lines(parsed));
  const core::Config d;
  const core::Config& c = *parsed.config;
  EXPECT_EQ(c.endpoint_host, d.endpoint_host);
  EXPECT_EQ(c.endpoint_port, d.endpoint_port);
  EXPECT_EQ(c.method, d.method);
  EXPECT_EQ(c.enrollment, d.enrollment);
  EXPECT_EQ(c.sas_token_lifetime, d.sas_token_lifetime);
  EXPECT_EQ(c.connect_timeout, d.connect_timeout);
  EXPECT_EQ(c.tls_handshake_timeout, d.tls_handshake_timeout);
  EXPECT_EQ(c.response_timeout, d.response_timeout);
  EXPECT_EQ(c.retry_initial, d.retry_initial);
  EXPECT_EQ(c.retry_max, d.retry_max);
  EXPECT_EQ(c.retry_refused, d.retry_refused);
  EXPECT_EQ(c.state_dir, d.state_dir);
  EXPECT_EQ(c.runtime_dir, d.runtime_dir);
}

// [proxy]: a password in url only from a private file; credentials from a key-like file or a
// systemd credential, resolved into proxy->user/password by load_config().
TEST(LoadConfig, ProxyPasswordInUrlNeedsAPrivateConfigFile) {
  ScratchDir dir;
  const auto main = write(dir / "config.toml", kRequired, 0644);
  const auto dropin = write(dir / "config.d/50-proxy.toml",
                            "[proxy]\nurl = \"http://u:hunter2@proxy:3128\"\n", 0644);
  const auto open = io::load_config(main);
  ASSERT_EQ(open.problems.size(), 1u) << ::testing::PrintToString(lines(open));
  EXPECT_EQ(open.problems[0].file, dropin.string());
  EXPECT_EQ(open.problems[0].key, "proxy.url");
  EXPECT_EQ(open.problems[0].to_string().find("hunter2"), std::string::npos);

  ASSERT_EQ(::chmod(dropin.c_str(), 0600), 0);
  const auto owner_only = io::load_config(main);
  ASSERT_TRUE(owner_only.config) << ::testing::PrintToString(lines(owner_only));
  EXPECT_EQ(owner_only.config->proxy->password, "hunter2");
}

TEST(LoadConfig, ProxyCredentialsFromAFile) {
  ScratchDir dir;
  const auto secret = write(dir / "keys/proxy", "proxyuser:pa:ss\n", 0600);
  const auto main = write(dir / "config.toml", kRequired, 0644);
  write(dir / "config.d/50-proxy.toml",
        "[proxy]\nurl = \"http://proxy:3128\"\ncredentials = \"file://" + secret.string() + "\"\n",
        0644);
  const auto result = io::load_config(main);
  ASSERT_TRUE(result.config) << ::testing::PrintToString(lines(result));
  ASSERT_TRUE(result.config->proxy);
  EXPECT_EQ(result.config->proxy->user, "proxyuser");
  EXPECT_EQ(result.config->proxy->password, "pa:ss");  // split at the first ':'
  EXPECT_EQ(result.config->proxy->display(), "http://proxyuser:***@proxy:3128");

  // Key-file rules: readable by others is refused, naming the file and never the content.
  ASSERT_EQ(::chmod(secret.c_str(), 0644), 0);
  const auto open = io::load_config(main);
  ASSERT_EQ(open.problems.size(), 1u) << ::testing::PrintToString(lines(open));
  EXPECT_EQ(open.problems[0].key, "proxy.credentials");
  EXPECT_EQ(open.problems[0].reason, "file " + secret.string() +
                                         " has mode 0644; it must not be readable or writable by "
                                         "others (chmod o-rwx " +
                                         secret.string() + ")");
  // A FIFO, a symlink or a file without "user:" are refused too.
  fs::remove(secret);
  ASSERT_EQ(::mkfifo(secret.c_str(), 0600), 0);
  const auto fifo = io::load_config(main);
  ASSERT_EQ(fifo.problems.size(), 1u);
  EXPECT_EQ(fifo.problems[0].reason, "file " + secret.string() + " is a FIFO, not a regular file");
  fs::remove(secret);
  write(dir / "keys/real", "u:p\n", 0600);
  fs::create_symlink(dir / "keys/real", secret);
  const auto link = io::load_config(main);
  ASSERT_EQ(link.problems.size(), 1u);
  EXPECT_NE(link.problems[0].reason.find("is a symbolic link"), std::string::npos);
  fs::remove(secret);
  write(secret, "hunter2\n", 0600);
  const auto shapeless = io::load_config(main);
  ASSERT_EQ(shapeless.problems.size(), 1u);
  EXPECT_EQ(shapeless.problems[0].reason,
            "file " + secret.string() + " must hold one line, user:password");
}

TEST(LoadConfig, ProxyCredentialsFromASystemdCredential) {
  ScratchDir dir;
  write(dir / "creds/proxy", "cred-user:cred-pass", 0644);  // systemd owns the modes there
  CredentialsDirectory creds((dir / "creds").string());
  const auto main = write(dir / "config.toml",
                          std::string(kRequired) +
                              "[proxy]\nurl = \"http://proxy:3128\"\ncredentials = "
                              "\"credential:proxy\"\n",
                          0644);
  const auto result = io::load_config(main);
  ASSERT_TRUE(result.config) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.config->proxy->user, "cred-user");
  EXPECT_EQ(result.config->proxy->password, "cred-pass");
}

TEST(LoadConfig, PayloadFileMustBeARegularFileHoldingAJsonObject) {
  ScratchDir dir;
  const auto payload = dir / "payload.json";
  const auto main = write(dir / "config.toml",
                          std::string(kRequired) + "payload_file = \"" + payload.string() + "\"\n");
  // kRequired ends inside [provisioning.attestation]; put payload_file where it belongs.
  write(main, "[provisioning]\npayload_file = \"" + payload.string() + "\"\n" +
                  std::string(kRequired).substr(std::string(kRequired).find("id_scope")));
  const auto expect_problem = [&](const std::string& reason) {
    const auto result = io::load_config(main);
    ASSERT_EQ(result.problems.size(), 1u) << ::testing::PrintToString(lines(result));
    EXPECT_EQ(result.problems[0].to_string(),
              payload.string() + ": provisioning.payload_file: " + reason);
  };
  write(payload, "[1, 2]");
  expect_problem("must hold a JSON object, found an array");
  write(payload, std::string(70000, ' ') + "{}");
  expect_problem("is larger than 65536 bytes");
  fs::remove(payload);
  ASSERT_EQ(::mkfifo(payload.c_str(), 0644), 0);
  expect_problem("is a FIFO, not a regular file");
}

TEST(LoadConfig, TrustBundleMustBeARegularFile) {
  ScratchDir dir;
  const auto bundle = dir / "ca.pem";
  ASSERT_EQ(::mkfifo(bundle.c_str(), 0644), 0);
  const auto main = write(dir / "config.toml", std::string(kRequired) + "[tls]\ntrust_bundle = \"" +
                                                   bundle.string() + "\"\n");
  const auto result = io::load_config(main);
  ASSERT_EQ(result.problems.size(), 1u) << ::testing::PrintToString(lines(result));
  EXPECT_EQ(result.problems[0].to_string(),
            bundle.string() + ": tls.trust_bundle: is a FIFO, not a regular file");
  // Distributions link their bundle: a symlink to a regular file is fine here.
  fs::remove(bundle);
  write(dir / "real.pem", "", 0644);
  fs::create_symlink(dir / "real.pem", bundle);
  EXPECT_TRUE(io::load_config(main).config);
}

}  // namespace
}  // namespace dpsd
