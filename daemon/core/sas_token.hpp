#pragma once
// Shared access signature tokens for DPS symmetric-key attestation, byte for byte the form the
// Azure C SDK and the embedded SDK send (resource with lower-case "%2f", skn=registration); see
// shared/dps-protocol.md section 2. Pure: no clock, no files. The HMAC itself is a parameter so
// a key that lives in a PKCS#11 token can sign without its bytes entering dpsd.
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/base64.hpp"  // Bytes, and the codec callers of the signer use
#include "core/expected.hpp"

namespace dpsd::core {

// Percent-encoding with lower-case hex digits, keeping ALPHA / DIGIT / "-" / "_" / "." and
// encoding everything else (the C SDK keeps "!()*" too, and encodes "~"; we keep the strictly
// unreserved set minus "~" so both readings agree on every byte we emit).
std::string url_encode_lower(std::string_view text);

Bytes hmac_sha256(std::span<const std::uint8_t> key, std::string_view message);

// Group enrollment: device key = base64(HMAC-SHA256(base64decode(group key), registration id)).
Expected<std::string> derive_device_key(std::string_view group_key_base64,
                                        std::string_view registration_id);

// "{scope}%2fregistrations%2f{regid}" with each part url_encode_lower()ed.
std::string sas_resource(std::string_view id_scope, std::string_view registration_id);
// resource + "\n" + decimal expiry.
std::string sas_string_to_sign(std::string_view encoded_resource, std::int64_t expiry_unix);

// Computes HMAC-SHA256 of the string to sign with the device key, wherever the key lives.
using Signer = std::function<Expected<Bytes>(std::string_view string_to_sign)>;
// A Signer over a base64 device key held in memory; fails on a malformed key.
Expected<Signer> make_memory_signer(std::string_view device_key_base64);

// "SharedAccessSignature sr={resource}&sig={urlenc(base64(sig))}&se={expiry}&skn=registration"
Expected<std::string> make_sas_token(const Signer& signer, std::string_view id_scope,
                                     std::string_view registration_id, std::int64_t expiry_unix);

}  // namespace dpsd::core
