// parse_key_uri() and parse_pkcs11_uri(): the forms the config accepts for where a secret is, and
// hostile input: relative paths, "..", percent-encoding games, control characters, NULs, very long
// text, and secrets pasted where their location belongs (never echoed).
#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "core/key_uri.hpp"

namespace dpsd::core {
namespace {

constexpr std::string_view kPlainCredential =
    "credential:NAME needs a plain credential name (no '/')";

bool has_control_character(std::string_view text) {
  for (const char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
  }
  return false;
}

TEST(ParseKeyUri, Forms) {
  auto file = parse_key_uri("file:///etc/dpsd/keys/device.key");
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(file->kind, KeyUri::Kind::File);
  EXPECT_EQ(file->value, "/etc/dpsd/keys/device.key");
  auto credential = parse_key_uri("credential:dps-key");
  ASSERT_TRUE(credential.ok());
  EXPECT_EQ(credential->kind, KeyUri::Kind::Credential);
  EXPECT_EQ(credential->value, "dps-key");
  for (const char* bad : {"file://", "file:///", "file:/etc/key", "file:relative", "credential:..",
                          "pkcs11:token=x", "", "/etc/dpsd/keys/device.key"}) {
    EXPECT_FALSE(parse_key_uri(bad).ok()) << bad;
  }
}

TEST(ParseKeyUri, FilePathsMustBeAbsoluteWithoutAHost) {
  for (const char* relative : {"file://key", "file://./key", "file://../etc/shadow",
                               "file://localhost/etc/key", "file://host/etc/key", "file://~/key"}) {
    const auto uri = parse_key_uri(relative);
    ASSERT_FALSE(uri) << relative;
    EXPECT_EQ(uri.code(), Errc::Invalid);
    EXPECT_EQ(uri.error(), "file URI must be file:///absolute/path (a host part is not supported)");
  }
  EXPECT_EQ(parse_key_uri("file:///").error(), "file URI must name a file");
  // Without "//" it is not a file URI at all; only the scheme is named.
  EXPECT_EQ(parse_key_uri("file:etc/key").error(),
            "unsupported URI scheme 'file' (use file:///path or credential:NAME)");
}

TEST(ParseKeyUri, FilePathsAreTakenLiterally) {
  // ".." stays in an absolute path: the path names what the root-owned config says, and the
  // loader still refuses symlinks, FIFOs and readable-by-others files at the end of it.
  EXPECT_EQ(parse_key_uri("file:///etc/dpsd/../shadow")->value, "/etc/dpsd/../shadow");
  // No %-decoding, so an encoded ".." or NUL is just those characters in a file name.
  EXPECT_EQ(parse_key_uri("file:///etc/%2e%2e/shadow")->value, "/etc/%2e%2e/shadow");
  EXPECT_EQ(parse_key_uri("file:///etc/dpsd/key%00.pem")->value, "/etc/dpsd/key%00.pem");
  EXPECT_EQ(parse_key_uri("file:///etc/dpsd/key%2F..%2Fx")->value, "/etc/dpsd/key%2F..%2Fx");
  // A real NUL would cut the path short in open(): refused.
  EXPECT_EQ(parse_key_uri(std::string_view("file:///etc/key\0.bak", 20)).error(),
            "file URI must not contain a NUL character");
  // Other control characters are legal in Linux file names and kept as they are (every sink
  // that shows a path escapes them: core::sanitize_text).
  EXPECT_EQ(parse_key_uri("file:///etc/dpsd/a\nb")->value, "/etc/dpsd/a\nb");
  // Length is the kernel's business (ENAMETOOLONG when the file is opened), not the parser's.
  const std::string long_path = "/" + std::string(100000, 'k');
  EXPECT_EQ(parse_key_uri("file://" + long_path)->value, long_path);
}

TEST(ParseKeyUri, CredentialNamesArePlainFileNames) {
  for (const std::string_view bad :
       {std::string_view("credential:"), std::string_view("credential:."),
        std::string_view("credential:.."), std::string_view("credential:../key"),
        std::string_view("credential:a/b"), std::string_view("credential:/etc/key"),
        std::string_view("credential:key/"), std::string_view("credential:a\0b", 14)}) {
    const auto uri = parse_key_uri(bad);
    ASSERT_FALSE(uri) << ::testing::PrintToString(std::string(bad));
    EXPECT_EQ(uri.error(), kPlainCredential);
  }
  // Not decoded: "%2e%2e" is a name, not "..", and stays inside $CREDENTIALS_DIRECTORY.
  EXPECT_EQ(parse_key_uri("credential:%2e%2e")->value, "%2e%2e");
  EXPECT_EQ(parse_key_uri("credential:...")->value, "...");
  // Names systemd would never create (control characters, longer than NAME_MAX) pass the syntax
  // and are then not found; they cannot leave the credentials directory.
  EXPECT_TRUE(parse_key_uri("credential:a\tb"));
  EXPECT_TRUE(parse_key_uri("credential:" + std::string(300, 'n')));
  // The scheme is case-sensitive, as the rest of the config.
  EXPECT_EQ(parse_key_uri("CREDENTIAL:k").error(),
            "unsupported URI scheme 'CREDENTIAL' (use file:///path or credential:NAME)");
}

TEST(ParseKeyUri, ErrorsNeverEchoWhatFollowsTheScheme) {
  const std::string secret = "c2VjcmV0LWtleS1ieXRlcy0wMTIzNDU2Nzg5YWJjZA==";
  for (const std::string& pasted :
       {secret, "SharedAccessKey=" + secret, "https://vault/" + secret, "key:" + secret,
        "a-very-long-scheme-name:" + secret, "ht\ttp:" + secret, "\x1b[31m:" + secret,
        std::string(100000, 'A'), "file:" + secret, "credential:" + secret + "/x",
        "pkcs11:" + secret}) {
    const auto uri = parse_key_uri(pasted);
    ASSERT_FALSE(uri) << pasted.substr(0, 40);
    EXPECT_EQ(uri.error().find(secret.substr(0, 8)), std::string::npos) << uri.error();
    EXPECT_FALSE(has_control_character(uri.error())) << uri.error();
    EXPECT_LT(uri.error().size(), 120U) << "the message is bounded, whatever the input";
  }
  EXPECT_EQ(parse_key_uri(secret).error(),
            "must be a URI that says where the key is, not the key itself (use file:///path or "
            "credential:NAME)");
}

TEST(ParsePkcs11Uri, Forms) {
  auto uri = parse_pkcs11_uri("pkcs11:token=My%20Token;object=k;id=%01%ff;type=secret-key");
  ASSERT_TRUE(uri) << uri.error();
  EXPECT_EQ(uri->path.at("token"), "My Token");
  EXPECT_EQ(uri->path.at("object"), "k");
  EXPECT_EQ(uri->path.at("id"), std::string("\x01\xff", 2));
  EXPECT_EQ(uri->text, "pkcs11:token=My%20Token;object=k;id=%01%ff;type=secret-key");
  EXPECT_TRUE(is_pkcs11_uri("pkcs11:object=k"));
  EXPECT_FALSE(is_pkcs11_uri("PKCS11:object=k"));
  EXPECT_FALSE(parse_pkcs11_uri("pkcs11:token=t"));  // names no key
  EXPECT_EQ(parse_pkcs11_uri("pkcs11:token=t;color=red;object=k").error(),
            "pkcs11: URI has unknown attribute \"color\" (RFC 7512)");
  EXPECT_EQ(parse_pkcs11_uri("pkcs11:object=k;object=j").error(),
            "pkcs11: URI has attribute \"object\" twice");
  EXPECT_EQ(parse_pkcs11_uri("pkcs11:object=%zz").error(),
            "pkcs11: URI attribute \"object\" has a bad %-escape");
  EXPECT_EQ(parse_pkcs11_uri("pkcs11:object").error(),
            "pkcs11: URI attribute \"object\" has no '='");
  EXPECT_FALSE(parse_pkcs11_uri("pkcs11:object=k?module-path=/x.so"));
  EXPECT_FALSE(parse_pkcs11_uri("file:///k"));
  // Empty parts between semicolons are skipped.
  EXPECT_TRUE(parse_pkcs11_uri("pkcs11:;;object=k;;"));
}

TEST(ParsePkcs11Uri, PercentEncodingIsDecodedOnceAndStrictly) {
  for (const char* bad : {"pkcs11:object=%", "pkcs11:object=k%", "pkcs11:object=%4",
                          "pkcs11:object=%4g", "pkcs11:object=%%41", "pkcs11:object=%-1"}) {
    EXPECT_EQ(parse_pkcs11_uri(bad).error(), "pkcs11: URI attribute \"object\" has a bad %-escape")
        << bad;
  }
  // Decoded once: "%2541" is the three characters "%41", not "A".
  EXPECT_EQ(parse_pkcs11_uri("pkcs11:object=%2541")->path.at("object"), "%41");
  // An id is raw bytes, NUL included; a label may hold any byte the token has.
  EXPECT_EQ(parse_pkcs11_uri("pkcs11:id=%00%00")->path.at("id"), std::string(2, '\0'));
  EXPECT_EQ(parse_pkcs11_uri("pkcs11:object=a%2Fb%3Bc")->path.at("object"), "a/b;c");
  // An encoded attribute name is not decoded, so it is unknown rather than a hidden attribute.
  EXPECT_EQ(parse_pkcs11_uri("pkcs11:%6Fbject=k").error(),
            "pkcs11: URI has unknown attribute \"%6Fbject\" (RFC 7512)");
}

TEST(ParsePkcs11Uri, PinIsRefusedInEveryFormWithoutEcho) {
  for (const char* with_pin :
       {"pkcs11:object=k?pin-value=98761", "pkcs11:object=k;pin-value=98761",
        "pkcs11:object=k?PIN-VALUE=98761", "pkcs11:object=k?pin-source=file:/98761",
        "pkcs11:pin-value=98761;object=%zz"}) {
    const auto uri = parse_pkcs11_uri(with_pin);
    ASSERT_FALSE(uri) << with_pin;
    EXPECT_EQ(uri.error().find("98761"), std::string::npos) << uri.error();
    EXPECT_NE(uri.error().find("PIN in the pkcs11: URI is refused"), std::string::npos)
        << uri.error();
  }
  // Percent-encoded, the name is unknown: refused, and still without the value.
  const auto encoded = parse_pkcs11_uri("pkcs11:object=k;pin%2Dvalue=98761");
  ASSERT_FALSE(encoded);
  EXPECT_EQ(encoded.error().find("98761"), std::string::npos) << encoded.error();
}

TEST(ParsePkcs11Uri, LongAndControlInputIsHandled) {
  const std::string label(100000, 'l');
  EXPECT_EQ(parse_pkcs11_uri("pkcs11:object=" + label)->path.at("object"), label);
  std::string many_parts = "pkcs11:object=k";
  for (int i = 0; i < 10000; ++i) many_parts += ";";
  EXPECT_TRUE(parse_pkcs11_uri(many_parts));
  EXPECT_FALSE(parse_pkcs11_uri("pkcs11:object=k;\x01=1"));
  EXPECT_FALSE(parse_pkcs11_uri(std::string_view("pkcs11:obj\0ect=k", 16)));
}

}  // namespace
}  // namespace dpsd::core
