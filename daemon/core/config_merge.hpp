#pragma once
// Merging: the main file, then each drop-in (config.d/*.toml in lexical order), applied key by
// key onto one Config, so a later file overrides single keys, not whole tables. The merger
// remembers which document set each key last (problems name that file), which keys hold an
// invalid value (so cross-key rules do not report them twice), and which documents are private.
#include <toml++/toml.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/config.hpp"

namespace dpsd::core {

class ConfigMerger {
 public:
  // Parses the document and applies its keys through the schema. A TOML syntax error skips the
  // whole document (toml++ yields nothing usable from a broken file) and is reported with its
  // line and column; returns false then. Problems within one document are in file order.
  bool apply(const ConfigDocument& document);

  void problem(std::string file, std::string key, std::string reason);

  Config& config() { return config_; }
  std::vector<ConfigProblem>& problems() { return problems_; }
  bool was_set(const std::string& key) const { return origin_.count(key) != 0; }
  bool is_valid(const std::string& key) const { return invalid_.count(key) == 0; }
  // The document that set `key` last; only for keys that were_set().
  const std::string& origin(const std::string& key) const { return origin_.at(key); }
  // Whether the (first) document named `file` is readable by its owner only.
  bool is_private(const std::string& file) const;

 private:
  void walk(const toml::table& table, std::string_view path);
  void node_problem(const toml::node& node, std::string key, std::string reason);

  const std::string* file_ = nullptr;  // the document being applied
  // Where each problem of that document is (line, column), to put them in file order.
  std::vector<std::pair<std::uint32_t, std::uint32_t>> positions_;
  Config config_;
  std::vector<ConfigProblem> problems_;
  std::map<std::string, std::string> origin_;
  std::set<std::string> invalid_;
  std::map<std::string, bool> private_;
};

}  // namespace dpsd::core
