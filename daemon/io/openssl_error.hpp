#pragma once
// OpenSSL's queued error, in words, for messages that name what failed and why.
#include <string>

namespace dpsd::io {

// The earliest queued error is the root cause ("No such file or directory", "no certificate or
// crl found"); later ones only say which layer passed it up. Clears the queue.
std::string openssl_reason();

}  // namespace dpsd::io
