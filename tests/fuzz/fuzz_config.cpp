// libFuzzer target: the pure core::parse_config, from text, with drop-ins (no file is read). The
// input is split on the byte 0x00 into up to three TOML documents (main file, then two drop-ins),
// so the fuzzer explores merging too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const char* const kNames[] = {"/etc/dpsd/config.toml", "/etc/dpsd/config.d/10-a.toml",
                                       "/etc/dpsd/config.d/20-b.toml"};
  std::vector<dpsd::core::ConfigDocument> documents;
  std::string current;
  for (std::size_t i = 0; i < size; ++i) {
    if (data[i] == 0 && documents.size() < 2) {
      // The first drop-in counts as a private file (mode 0600), the others as world-readable,
      // so both sides of the proxy-password rule are reached.
      documents.push_back({kNames[documents.size()], current, documents.size() == 1});
      current.clear();
    } else {
      current.push_back(static_cast<char>(data[i]));
    }
  }
  documents.push_back({kNames[documents.size()], current});
  const std::vector<dpsd::core::ConfigDocument> drop_ins(documents.begin() + 1, documents.end());
  const auto result = dpsd::core::parse_config(documents.front(), drop_ins);
  // Exactly one of: a config, or problems (each with a reason).
  if (result.config.has_value() == !result.problems.empty()) std::abort();
  for (const auto& problem : result.problems) {
    if (problem.reason.empty()) std::abort();
    (void)problem.to_string();
  }
  return 0;
}
