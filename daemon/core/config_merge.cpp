#include "core/config_merge.hpp"

#include <algorithm>
#include <cstddef>

#include "core/config_schema.hpp"

namespace dpsd::core {

namespace {

std::string dotted(std::string_view table, std::string_view name) {
  return table.empty() ? std::string(name) : std::string(table) + "." + std::string(name);
}

}  // namespace

bool ConfigMerger::apply(const ConfigDocument& document) {
  private_.emplace(document.name, document.private_file);
  toml::table root;
  try {
    root = toml::parse(document.text, document.name);
  } catch (const toml::parse_error& e) {
    const auto& begin = e.source().begin;
    problem(document.name, "",
            "syntax error at line " + std::to_string(begin.line) + ", column " +
                std::to_string(begin.column) + ": " + std::string(e.description()));
    return false;
  }
  file_ = &document.name;
  positions_.clear();
  const std::size_t first = problems_.size();
  walk(root, "");
  // toml++ iterates tables in key order; operators read problems in the order of the file.
  std::vector<std::size_t> order(problems_.size() - first);
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return positions_[a] < positions_[b]; });
  std::vector<ConfigProblem> sorted;
  sorted.reserve(order.size());
  for (std::size_t i : order) sorted.push_back(std::move(problems_[first + i]));
  std::move(sorted.begin(), sorted.end(), problems_.begin() + static_cast<std::ptrdiff_t>(first));
  file_ = nullptr;
  return true;
}

void ConfigMerger::problem(std::string file, std::string key, std::string reason) {
  problems_.push_back({std::move(file), std::move(key), std::move(reason)});
}

bool ConfigMerger::is_private(const std::string& file) const {
  const auto found = private_.find(file);
  return found != private_.end() && found->second;
}

void ConfigMerger::walk(const toml::table& table, std::string_view path) {
  for (auto&& [key, node] : table) {
    const std::string name(key.str());
    const std::string full = dotted(path, name);
    if (config_schema::is_table(full)) {
      if (const auto* sub = node.as_table()) {
        walk(*sub, full);
      } else {
        node_problem(node, full, "must be a table");
      }
      continue;
    }
    const config_schema::Key* known = config_schema::find_key(path, name);
    if (known == nullptr) {
      node_problem(node, full, config_schema::unknown_key_reason(path, name));
      continue;
    }
    // Later documents override earlier ones key by key; the last one to set a key owns it.
    origin_[full] = *file_;
    if (auto applied = known->apply(config_, node); !applied) {
      invalid_.insert(full);
      node_problem(node, full, applied.error());
    } else {
      invalid_.erase(full);
    }
  }
}

void ConfigMerger::node_problem(const toml::node& node, std::string key, std::string reason) {
  const auto& begin = node.source().begin;
  positions_.emplace_back(begin.line, begin.column);
  problem(*file_, std::move(key), std::move(reason));
}

}  // namespace dpsd::core
