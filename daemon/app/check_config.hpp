#pragma once
// dpsd --check-config: the configuration, the key source (file, credential, token or X.509
// identity) and the trust bundle checked the way the daemon would use them, every problem printed
// as "file: key: reason".
#include <filesystem>

namespace dpsd::app {

// Prints every problem to stderr (or "configuration OK" to stdout); returns core::kExitOk or
// core::kExitConfig.
int check_config(const std::filesystem::path& config_path);

}  // namespace dpsd::app
