#pragma once
// Durable state: <state_dir>/state.json (0644) and <runtime_dir>/iothub.env (0644), each written
// atomically: a temp file in the same directory, write, fsync, rename over, fsync the directory.
// A failed write leaves the previous file as it was and removes the temp file.
#include <filesystem>
#include <optional>
#include <string>

#include "core/expected.hpp"
#include "core/state_record.hpp"

namespace dpsd::io {

Status write_file_atomically(const std::filesystem::path& path, const std::string& content,
                             unsigned mode);

class StateStore {
 public:
  StateStore(std::filesystem::path state_dir, std::filesystem::path runtime_dir);

  std::filesystem::path state_path() const { return state_dir_ / "state.json"; }
  std::filesystem::path env_path() const { return runtime_dir_ / "iothub.env"; }

  // Writes state.json then iothub.env. Creates missing directories (0755).
  Status save(const core::Assignment& assignment);
  // nullopt with *problem empty when there is no state file; nullopt with *problem set when the
  // file exists but cannot be read or parsed (the caller logs it and carries on).
  std::optional<core::Assignment> load(std::string* problem) const;
  // Re-writes iothub.env from a loaded state (the runtime dir is a tmpfs emptied at boot).
  Status write_env(const core::Assignment& assignment);

 private:
  std::filesystem::path state_dir_;
  std::filesystem::path runtime_dir_;
};

}  // namespace dpsd::io
