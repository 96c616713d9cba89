#pragma once
// The value types of the configuration: how one TOML value is checked and stored into a Config
// field. Each check returns ok or an Error whose message is phrased to follow "key: " ("must be
// a string", "must be an absolute path (got \"x\")"). Used by the key table (config_schema.cpp).
#include <toml++/toml.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "core/expected.hpp"

namespace dpsd::core::config_values {

inline constexpr std::string_view kMustBeString = "must be a string";

// "\"text\"", for messages that show what was found.
std::string quoted(std::string_view text);

// The string a node holds, or nullopt when it holds anything else.
std::optional<std::string_view> string_of(const toml::node& node);

// "host", "host:port", "[v6]" or "[v6]:port": sets host (without brackets: it is what goes to
// the resolver, SNI and the certificate name check) and port (reset when none is given).
Status check_endpoint(std::string_view text, std::string& host, std::optional<std::uint16_t>& port);
// Letters and digits, as the DPS overview page shows the ID Scope.
Status check_id_scope(std::string_view text);
// DPS's documented registration ID rule (see config_values.cpp for the citation).
Status check_registration_id(std::string_view text);
// Paths the daemon opens at run time must not depend on its working directory.
Status check_absolute_path(std::string_view text);

// A TOML integer counts seconds; a string goes through parse_duration(). Not negative.
Expected<std::chrono::milliseconds> duration_of(const toml::node& node);
// Timeouts and retry delays of zero would spin or never wait: both are configuration mistakes.
Status set_positive_duration(std::chrono::milliseconds& field, const toml::node& node);
// An absolute path.
Status set_path(std::filesystem::path& field, const toml::node& node);
// An absolute path, or "" for "not set", so a drop-in can undo what the main file set.
Status set_optional_path(std::optional<std::filesystem::path>& field, const toml::node& node);

}  // namespace dpsd::core::config_values
