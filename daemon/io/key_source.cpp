#include "io/key_source.hpp"

#include <openssl/crypto.h>

#include <cerrno>
#include <cstdlib>
#include <optional>

#include "core/key_uri.hpp"
#include "io/regular_file.hpp"

namespace dpsd::io {

namespace {

// DPS keys are 32 or 64 bytes (44 or 88 base64 characters); anything much larger is not a key.
constexpr std::size_t kMaxKeyFileSize = 4096;
constexpr std::size_t kMinKeyBytes = 16;

// Overwrites every byte the string owns, including the spare capacity and the small-string
// buffer a move leaves behind: resize() writes zeros there through conforming code, then the
// cleanse covers the whole range in a way the optimiser cannot drop.
void wipe(std::string& text) {
  text.resize(text.capacity());
  OPENSSL_cleanse(text.data(), text.size());
  text.clear();
}

bool is_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

// Standard base64 with padding, as the Azure portal shows it. Checked structurally so the key
// is never decoded into another buffer here; the SAS code decodes it when it signs. The reason
// never quotes key characters.
std::optional<std::string> base64_problem(std::string_view text) {
  if (text.size() % 4 != 0) return "is not valid base64 (length is not a multiple of 4)";
  std::size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') {
    ++padding;
  }
  const std::size_t body = text.size() - padding;
  for (std::size_t i = 0; i < body; ++i) {
    if (!is_base64_char(text[i])) {
      return "is not valid base64 (unexpected character at position " + std::to_string(i + 1) + ")";
    }
  }
  const std::size_t decoded = text.size() / 4 * 3 - padding;
  if (decoded < kMinKeyBytes) {
    return "is too short for a DPS key (" + std::to_string(decoded) + " bytes; at least " +
           std::to_string(kMinKeyBytes) + " expected)";
  }
  return std::nullopt;
}

// `what` names the source in every message: "key file /path" or "credential 'name' (/path)".
// Opening, the file-type check and the bounded read are open_regular_file's (O_NONBLOCK so
// a FIFO cannot hang the daemon, O_NOFOLLOW for key files).
Expected<SecretText> read_key(const std::string& path, const std::string& what,
                              bool enforce_private) {
  // Credentials live in a directory systemd made and manages (links followed, modes its
  // business); for plain files we are the
  // last line of defence against a key anyone on the gateway can copy. The buffer is read once
  // and never reallocates; SecretText wipes it on every path out of here, and the trimmed copy
  // below is a SecretText too.
  int open_errno = 0;
  std::string raw;
  auto read = read_secret_file(path, what, enforce_private, kMaxKeyFileSize, raw, &open_errno);
  SecretText whole(std::move(raw));
  if (!read) {
    if (enforce_private && open_errno == ELOOP) {
      return Error{Errc::NotRegularFile,
                   what + " is a symbolic link; refusing to follow it (point symmetric_key at " +
                       "the file itself)"};
    }
    if (read.code() == Errc::TooLarge) {
      return Error{Errc::TooLarge, what + " is larger than " + std::to_string(kMaxKeyFileSize) +
                                       " bytes; it does not look like a key"};
    }
    return read.failure();
  }

  std::string_view text(whole.view());
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  const auto first = text.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return Error{Errc::Invalid, what + " is empty"};
  text = text.substr(first, text.find_last_not_of(kSpace) - first + 1);
  if (auto problem = base64_problem(text)) return Error{Errc::Invalid, what + " " + *problem};
  return SecretText(std::string(text));
}

Expected<SecretText> load(std::string_view uri) {
  auto parsed = core::parse_key_uri(uri);
  // No "symmetric_key: " prefix here: callers name the setting when they report the error.
  if (!parsed) return parsed.failure();
  if (parsed->kind == core::KeyUri::Kind::File) {
    return read_key(parsed->value, "key file " + parsed->value, true);
  }
  const std::string& name = parsed->value;
  const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
  if (dir == nullptr || *dir == '\0') {
    return Error{Errc::NotFound, "credential '" + name +
                                     "' not found: $CREDENTIALS_DIRECTORY is not set (add "
                                     "LoadCredential= or SetCredential= to the service)"};
  }
  const std::string path = std::string(dir) + "/" + name;
  return read_key(path, "credential '" + name + "' (" + path + ")", false);
}

}  // namespace

SecretText::SecretText(SecretText&& other) noexcept : text_(std::move(other.text_)) {
  wipe(other.text_);
}

SecretText& SecretText::operator=(SecretText&& other) noexcept {
  if (this != &other) {
    wipe(text_);
    text_ = std::move(other.text_);
    wipe(other.text_);
  }
  return *this;
}

SecretText::~SecretText() {
  wipe(text_);
}

Status check_key_source(std::string_view uri) {
  // Loading is the check: the same code path the daemon uses, and the SecretText wipes the key
  // as soon as this returns.
  auto key = load(uri);
  if (!key) return key.failure();
  return ok_status();
}

Expected<SecretText> load_key(std::string_view uri) {
  return load(uri);
}

}  // namespace dpsd::io
