#pragma once
#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace dpsd::test {

// Whole file as bytes; throws std::runtime_error naming the path when it cannot be read.
std::string read_file(const std::filesystem::path& path);
// Creates or truncates, then sets `mode` explicitly (the umask must not decide what a test sees).
void write_file(const std::filesystem::path& path, std::string_view text, mode_t mode = 0644);

}  // namespace dpsd::test
