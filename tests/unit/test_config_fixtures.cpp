// Every scenario in tests/unit/config/*.toml, parsed as the main file /etc/dpsd/config.toml. A
// fixture says what it expects in its leading comments:
//   # expect: <text>   one per problem, in order: the problem's "file: key: reason" line
//                      contains <text>. No expect line: the file must parse without problems.
//   # never: <text>    no problem line may contain <text> (secrets that must not be echoed).
// Adding a scenario is adding a file; a test per file is discovered at build time.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.hpp"

namespace dpsd::core {
namespace {

namespace fs = std::filesystem;

const fs::path kFixtureDir = fs::path(DPSD_SOURCE_DIR) / "tests/unit/config";
constexpr const char* kMain = "/etc/dpsd/config.toml";

struct Fixture {
  std::string text;
  std::vector<std::string> expect;
  std::vector<std::string> never;
};

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The directives in the comment lines at the top of the file (before the first TOML line).
Fixture load_fixture(const fs::path& path) {
  Fixture fixture{read_text(path), {}, {}};
  std::istringstream lines(fixture.text);
  std::string line;
  while (std::getline(lines, line) && line.rfind('#', 0) == 0) {
    const auto directive = [&line](std::string_view name, std::vector<std::string>& into) {
      const std::string prefix = "# " + std::string(name) + ": ";
      if (line.rfind(prefix, 0) != 0) return;
      std::string value = line.substr(prefix.size());
      while (!value.empty() && (value.back() == ' ' || value.back() == '\r')) value.pop_back();
      into.push_back(value);
    };
    directive("expect", fixture.expect);
    directive("never", fixture.never);
  }
  return fixture;
}

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kFixtureDir, ec)) {
    if (entry.path().extension() == ".toml") names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

class ConfigFixture : public ::testing::TestWithParam<std::string> {};

TEST_P(ConfigFixture, ProblemsAreTheExpectedOnes) {
  const Fixture fixture = load_fixture(kFixtureDir / (GetParam() + ".toml"));
  ASSERT_FALSE(fixture.text.empty()) << "cannot read the fixture " << GetParam();
  const ConfigResult result = parse_config({kMain, fixture.text});
  std::vector<std::string> problems;
  for (const auto& problem : result.problems) problems.push_back(problem.to_string());

  EXPECT_EQ(result.config.has_value(), problems.empty());
  ASSERT_EQ(problems.size(), fixture.expect.size())
      << "problems: " << ::testing::PrintToString(problems);
  for (std::size_t i = 0; i < problems.size(); ++i) {
    EXPECT_NE(problems[i].find(fixture.expect[i]), std::string::npos)
        << "problem " << i + 1 << ": " << problems[i]
        << "\nexpected it to contain: " << fixture.expect[i];
  }
  for (const auto& secret : fixture.never) {
    for (const auto& problem : problems) {
      EXPECT_EQ(problem.find(secret), std::string::npos)
          << "echoes \"" << secret << "\": " << problem;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Folder, ConfigFixture, ::testing::ValuesIn(fixture_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// An empty or missing folder would make the suite above pass by having nothing to run.
TEST(ConfigFixtureFolder, HoldsValidAndInvalidScenarios) {
  const auto names = fixture_names();
  const auto valid = std::count_if(names.begin(), names.end(),
                                   [](const std::string& n) { return n.rfind("valid_", 0) == 0; });
  EXPECT_GE(valid, 5) << kFixtureDir;
  EXPECT_GE(names.size() - static_cast<std::size_t>(valid), 20U) << kFixtureDir;
  for (const auto& name : names) {
    const Fixture fixture = load_fixture(kFixtureDir / (name + ".toml"));
    // The name says which kind a fixture is, so a reader of the folder knows without opening it.
    EXPECT_EQ(name.rfind("valid_", 0) == 0, fixture.expect.empty()) << name;
  }
}

}  // namespace
}  // namespace dpsd::core
