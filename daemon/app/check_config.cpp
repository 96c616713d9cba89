#include "app/check_config.hpp"

#include <iostream>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/supervisor.hpp"
#include "core/text_sanitize.hpp"
#include "io/config_files.hpp"
#include "io/identity.hpp"
#include "io/key_source.hpp"
#include "io/pkcs11_signer.hpp"
#include "io/tls_context.hpp"

namespace dpsd::app {

int check_config(const std::filesystem::path& config_path) {
  core::ConfigResult result = io::load_config(config_path);
  std::vector<std::string> problems;
  for (const auto& problem : result.problems) problems.push_back(problem.to_string());
  if (result.config) {
    const core::Config& config = *result.config;
    if (config.method == core::AttestationMethod::X509) {
      if (auto status = io::check_identity(config); !status) {
        problems.push_back(config_path.string() + ": provisioning.attestation." + status.error());
      }
    } else if (core::is_pkcs11_uri(config.symmetric_key_uri)) {
      const auto settings = io::pkcs11_settings(config);
      auto status = settings ? io::check_pkcs11_key(config.symmetric_key_uri, *settings)
                             : Status(Error{"a pkcs11: key needs [pkcs11] module"});
      if (!status) {
        problems.push_back(config_path.string() +
                           ": provisioning.attestation.symmetric_key: " + status.error());
      }
    } else if (auto status = io::check_key_source(config.symmetric_key_uri); !status) {
      problems.push_back(config_path.string() +
                         ": provisioning.attestation.symmetric_key: " + status.error());
    }
  }
  if (result.config) {
    // The trust store is a dependency: an empty or missing bundle fails every handshake with a
    // bare "certificate verify failed", so say which file and what to do.
    if (auto tls = io::make_client_tls_context(result.config->trust_bundle); !tls) {
      problems.push_back(config_path.string() + ": tls.trust_bundle: " + tls.error());
    }
  }
  for (const auto& problem : problems) std::cerr << core::sanitize_text(problem) << "\n";
  if (!problems.empty()) {
    std::cerr << problems.size() << (problems.size() == 1 ? " problem" : " problems")
              << " in the configuration\n";
    return core::kExitConfig;
  }
  std::cout << "configuration OK: " << config_path.string() << "\n";
  return core::kExitOk;
}

}  // namespace dpsd::app
