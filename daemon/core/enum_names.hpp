#pragma once
// Enumerator names held as data: one array per enum, indexed by the enumerator, instead of one
// switch per enum that spells every case out again.
#include <array>
#include <cstddef>
#include <type_traits>

namespace dpsd::core {

// names[value - first]; `fallback` for a value outside the array (only a cast from a number
// the enum does not spell gets there).
template <typename Enum, typename Name, std::size_t N>
constexpr Name enum_name(Enum value, const std::array<Name, N>& names, Name fallback,
                         Enum first = Enum{}) {
  using Underlying = std::underlying_type_t<Enum>;
  const auto offset = static_cast<Underlying>(value) - static_cast<Underlying>(first);
  if (offset < 0 || static_cast<std::size_t>(offset) >= N) return fallback;
  return names[static_cast<std::size_t>(offset)];
}

}  // namespace dpsd::core
