#pragma once
// The configuration's files: the one place that reads them. io::load_config() reads the main
// file and config.d/, hands the texts to the pure core::parse_config(), then reads the files the
// configuration names (payload_file, [proxy] credentials) and checks trust_bundle.
#include <filesystem>

#include "core/config.hpp"

namespace dpsd::io {

// Reads main_file, then <dir of main_file>/config.d/*.toml in lexical order (other extensions
// and dot files ignored), parses, then reads payload_file and validates it as JSON into
// payload_json, reads [proxy] credentials into proxy->user/password, and checks that
// trust_bundle is a regular file. Every file goes through io::open_regular_file: a FIFO,
// directory, device or (except trust_bundle) symlink is refused with the path and what it is;
// config files are read up to 1 MiB, payload_file and the credentials up to 64 KiB. A missing main
// file is reported only when the result lacks required keys (so drop-ins alone may configure the
// daemon); any other read error is always a problem. It does not look at the key source: the
// caller runs io::check_key_source(config.symmetric_key_uri) itself (as --check-config does).
core::ConfigResult load_config(const std::filesystem::path& main_file);

}  // namespace dpsd::io
