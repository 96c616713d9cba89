#include "io/config_files.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "core/key_uri.hpp"
#include "io/regular_file.hpp"

namespace dpsd::io {

namespace {

// A config file is a few KiB; 1 MiB bounds a read of a wrong path such as a log file.
constexpr std::size_t kMaxConfigFileSize = std::size_t{1} << 20;
// payload_file goes into the register request as it is; 64 KiB keeps that request well inside
// the message sizes DPS works with (its replies are documented up to 96 KB) while being orders
// of magnitude above any real custom-allocation payload.
constexpr std::size_t kMaxPayloadFileSize = std::size_t{64} * 1024;
// "user:password" is a line; 64 KiB only bounds a wrong path.
constexpr std::size_t kMaxCredentialsFileSize = std::size_t{64} * 1024;

bool is_required_problem(const core::ConfigProblem& problem) {
  return problem.reason.rfind("is required", 0) == 0;
}

// One config file, marked private when only its owner (and dpsd's group) can read it. On an
// open() failure *open_errno receives errno (ENOENT: the file does not exist).
Expected<core::ConfigDocument> read_document(const std::string& path, int* open_errno) {
  auto file = open_regular_file(path, "", false, open_errno);
  if (!file) return file.failure();
  core::ConfigDocument document{path, "", !private_file_problem(file->st, path, path)};
  if (auto read = read_opened_file(*file, kMaxConfigFileSize, "", document.text); !read) {
    return read.failure();
  }
  return document;
}

// config.d/*.toml beside the main file, sorted by file name. Dot files are editor locks and
// temporaries (".#x.toml"), never real drop-ins. A directory, FIFO or symlink named *.toml is
// listed, not skipped: an operator who put it there meant it as a drop-in and must learn why it
// is not one (reading it says so).
std::vector<std::filesystem::path> list_drop_ins(const std::filesystem::path& dir,
                                                 std::vector<core::ConfigProblem>& problems) {
  std::error_code ec;
  std::vector<std::filesystem::path> drop_ins;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    problems.push_back({dir.string(), "", "cannot read: " + ec.message()});
  }
  for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const auto name = it->path().filename().string();
    if (it->path().extension() != ".toml" || name.front() == '.') continue;
    drop_ins.push_back(it->path());
  }
  std::sort(drop_ins.begin(), drop_ins.end(), [](const auto& a, const auto& b) {
    return a.filename().string() < b.filename().string();
  });
  return drop_ins;
}

// "user:password" from [proxy] credentials, read with a key file's rules. The content is never
// echoed in a message.
Status read_proxy_credentials(const std::string& uri, core::proxy::ProxyUrl& proxy) {
  auto parsed = core::parse_key_uri(uri);
  if (!parsed) return parsed.failure();
  std::string path;
  std::string what;
  const bool is_file = parsed->kind == core::KeyUri::Kind::File;
  if (is_file) {
    path = parsed->value;
    what = "file " + path;
  } else {
    const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
    if (dir == nullptr || *dir == '\0') {
      return Error{Errc::NotFound,
                   "credential '" + parsed->value +
                       "' not found: $CREDENTIALS_DIRECTORY is not set (add LoadCredential= or "
                       "SetCredential= to the service)"};
    }
    path = std::string(dir) + "/" + parsed->value;
    what = "credential '" + parsed->value + "' (" + path + ")";
  }
  // Credentials live in a directory systemd made and manages; only plain files are checked
  // for symlinks and modes, as key files are.
  std::string text;
  auto read = read_secret_file(path, what, is_file, kMaxCredentialsFileSize, text);
  const auto wipe = [&text] { OPENSSL_cleanse(text.data(), text.size()); };
  if (!read) return read.failure();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  const auto colon = text.find(':');
  if (colon == std::string::npos || colon == 0 || text.find('\n') != std::string::npos) {
    wipe();
    return Error{what + " must hold one line, user:password"};
  }
  proxy.user = text.substr(0, colon);
  proxy.password = text.substr(colon + 1);
  wipe();
  return ok_status();
}

// The files the configuration names, once it is valid: payload_file, [proxy] credentials and
// trust_bundle. Stops at the first problem, as each needs the ones before to make sense.
void read_named_files(core::ConfigResult& result, const std::string& main_file) {
  core::Config& config = *result.config;
  if (config.payload_file) {
    const std::string path = config.payload_file->string();
    const std::string key = "provisioning.payload_file";
    auto text = read_regular_file(path, kMaxPayloadFileSize, "");
    if (!text) {
      result.problems.push_back({path, key, text.error()});
      return;
    }
    auto json = core::validate_payload_json(*text);
    if (!json) {
      result.problems.push_back({path, key, json.error()});
      return;
    }
    config.payload_json = std::move(*json);
  }
  if (config.proxy_credentials_uri) {
    if (auto read = read_proxy_credentials(*config.proxy_credentials_uri, *config.proxy); !read) {
      result.problems.push_back({main_file, "proxy.credentials", read.error()});
      return;
    }
  }
  if (config.trust_bundle) {
    // Only opened here, not read: OpenSSL reads it when the TLS context is made. A symlink is
    // fine (distributions link their bundle), a FIFO or directory is not: OpenSSL's fopen() of a
    // FIFO would block the daemon.
    const std::string path = config.trust_bundle->string();
    if (auto file = open_regular_file(path, "", true); !file) {
      result.problems.push_back({path, "tls.trust_bundle", file.error()});
    }
  }
}

}  // namespace

core::ConfigResult load_config(const std::filesystem::path& main_file) {
  std::vector<core::ConfigProblem> read_problems;

  // A missing main file stands in as an empty document, so required keys are still reported
  // against it (it is where an operator would add them). Whether its absence is itself a
  // problem is decided after parsing: only if the drop-ins did not supply the required keys.
  core::ConfigDocument main{main_file.string(), ""};
  int open_errno = 0;
  if (auto read = read_document(main.name, &open_errno)) {
    main = std::move(*read);
  } else if (open_errno != ENOENT) {
    read_problems.push_back({main.name, "", read.error()});
  }
  const bool main_missing = open_errno == ENOENT;

  std::vector<core::ConfigDocument> drop_ins;
  for (const auto& path : list_drop_ins(main_file.parent_path() / "config.d", read_problems)) {
    if (auto read = read_document(path.string(), nullptr)) {
      drop_ins.push_back(std::move(*read));
    } else {
      read_problems.push_back({path.string(), "", read.error()});
    }
  }

  core::ConfigResult result = core::parse_config(main, drop_ins);
  if (!read_problems.empty()) {
    // As with a syntax error: the "missing" keys may be in the file that could not be read.
    std::erase_if(result.problems, is_required_problem);
  }
  if (main_missing) {
    const bool lacks_required =
        std::any_of(result.problems.begin(), result.problems.end(),
                    [&](const auto& p) { return p.file == main.name && is_required_problem(p); });
    if (lacks_required) {
      read_problems.insert(read_problems.begin(),
                           {main.name, "", "cannot open: No such file or directory"});
    }
  }
  result.problems.insert(result.problems.begin(), read_problems.begin(), read_problems.end());

  if (result.problems.empty() && result.config) read_named_files(result, main.name);
  if (!result.problems.empty()) result.config.reset();
  return result;
}

}  // namespace dpsd::io
