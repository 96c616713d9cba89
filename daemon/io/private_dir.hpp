#pragma once
// The private directory that holds the relay socket (<runtime_dir>/private). Whoever can write
// the runtime directory could plant a symlink there; following it would chmod the target and put
// the relay socket wherever it points. So the directory is created and checked through file
// descriptors, never followed when it is a symlink, and must belong to us.
#include <filesystem>

#include "core/expected.hpp"
#include "io/unique_fd.hpp"

namespace dpsd::io {

// Creates `dir`'s parent if missing (as create_directories does), then `dir` itself with mode
// 0700 (an existing one is fine), and makes sure it is a directory owned by our effective uid
// with mode 0700. Refuses a symlink at `dir` ("… is a symlink; refusing to use it") without
// touching its target, and anything else that is not such a directory.
Status make_private_dir(const std::filesystem::path& dir);

// Opens an existing private directory for use: not a symlink, a directory, owned by our
// effective uid, no access for group or others. The fd keeps naming that very directory even
// if the path is replaced later.
Expected<UniqueFd> open_private_dir(const std::filesystem::path& dir);

}  // namespace dpsd::io
