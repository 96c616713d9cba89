#pragma once
// Errors as values for the pure core and the file adapters: a parse or a load either yields a
// value or one human-readable message that names the field or the cause. (C++23's std::expected
// is not in the GCC 12 standard library Debian 12 ships, so this is the small subset we need.)
#include <string>
#include <utility>
#include <variant>

namespace dpsd {

struct Error {
  std::string message;
};

template <typename T>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : data_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Expected(Error error) : data_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const { return std::holds_alternative<T>(data_); }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const std::string& error() const { return std::get<Error>(data_).message; }

 private:
  std::variant<T, Error> data_;
};

// For operations that yield nothing but can fail.
struct Done {};
using Status = Expected<Done>;
inline Status ok_status() {
  return Done{};
}

}  // namespace dpsd
