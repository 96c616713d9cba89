#pragma once
// Ownership of a C library's object: std::unique_ptr with the library's free function as the
// deleter, so each type needs one alias instead of one deleter struct.
#include <memory>

namespace dpsd::io {

template <auto Free>
struct FnDeleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};

template <typename T, auto Free>
using CPtr = std::unique_ptr<T, FnDeleter<Free>>;

}  // namespace dpsd::io
