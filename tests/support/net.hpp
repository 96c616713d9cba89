#pragma once
#include <chrono>
#include <cstdint>

namespace dpsd::test {

// A port the kernel just handed out on 127.0.0.1. Another process could take it before the
// caller binds it, but the kernel cycles through the ephemeral range, so that is rare.
std::uint16_t free_port();

// True once a TCP connect to 127.0.0.1:port succeeds (the connection is closed at once).
bool wait_for_tcp_port(std::uint16_t port, std::chrono::milliseconds timeout);

}  // namespace dpsd::test
