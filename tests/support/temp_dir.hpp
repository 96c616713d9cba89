#pragma once
// A scratch directory that exists exactly as long as the object does, so a failing test never
// leaves state behind that the next run could trip over.
#include <filesystem>
#include <string_view>

namespace dpsd::test {

class TempDir {
 public:
  // mkdtemp under $TMPDIR (or /tmp); prefix makes leftovers of a crashed run recognisable.
  explicit TempDir(std::string_view prefix = "dpsd-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;

  const std::filesystem::path& path() const { return path_; }
  // path() / name, for brevity at call sites.
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  void remove() noexcept;
  std::filesystem::path path_;
};

}  // namespace dpsd::test
