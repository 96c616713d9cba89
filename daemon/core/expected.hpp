#pragma once
// Errors as values: an operation either yields a value or an Error that carries a code (what
// kind of failure, for callers that branch on the cause) and a message (for people: it names
// the field, the file or the cause, with the context each layer adds). Nobody branches on the
// message text. (C++23's std::expected is not in the GCC 12 standard library Debian 12 ships,
// so this is the small subset we need.)
#include <string>
#include <utility>
#include <variant>

namespace dpsd {

// The causes callers branch on. Most failures are Invalid: bad input, named in the message.
enum class Errc {
  Invalid,           // malformed or out-of-range input (config, reply, file content)
  NotFound,          // a file, key or object that does not exist
  PermissionDenied,  // EACCES/EPERM, or a file whose owner or mode is refused
  NotRegularFile,    // a FIFO, device, directory or symlink where a regular file is required
  TooLarge,          // over a size or count bound
  Io,                // a read, write or system call failed
  Unsupported,       // a valid request this build or identity cannot serve
  Crypto,            // OpenSSL or PKCS#11 refused (bad key, bad PIN, verify failure)
};

struct Error {
  Errc code = Errc::Invalid;
  std::string message;

  Error(std::string text) : message(std::move(text)) {}  // NOLINT(google-explicit-constructor)
  Error(Errc cause, std::string text) : code(cause), message(std::move(text)) {}

  // The same cause, with the caller's context in front: "key file /etc/…: cannot open: …".
  Error within(const std::string& context) const { return {code, context + ": " + message}; }
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

  // The message, for people.
  const std::string& error() const { return std::get<Error>(data_).message; }
  // The cause, for code.
  Errc code() const { return std::get<Error>(data_).code; }
  // The whole error, to pass up unchanged or with context (failure().within("…")).
  const Error& failure() const { return std::get<Error>(data_); }

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
