// Vectors: shared/dps-protocol.md section 2 (official V1-V3, V6; independently computed ones)
// and RFC 4648 / RFC 4231 for the primitives.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <random>

#include "core/sas_token.hpp"

namespace dpsd::core {
namespace {

// gmock is not linked into the unit tests; a substring check is all the matchers would add.
::testing::AssertionResult HasSubstr(const std::string& text, std::string_view part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << '"' << text << "\" does not contain \"" << part << '"';
}

constexpr std::string_view kGroupKeyV1 =
    "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
constexpr std::string_view kRegIdV1 = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6";
constexpr std::string_view kDerivedKeyV1 = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=";

Bytes to_bytes(std::string_view s) {
  return Bytes(s.begin(), s.end());
}

std::string hex(const Bytes& bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (auto b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

// base64 of HMAC-SHA256(base64decode(key), message): the whole signing step in one call.
std::string sign_b64(std::string_view key_b64, std::string_view message) {
  auto key = base64_decode(key_b64);
  EXPECT_TRUE(key.has_value());
  return base64_encode(hmac_sha256(key.value_or(Bytes{}), message));
}

TEST(Base64, Rfc4648Vectors) {
  const std::pair<std::string_view, std::string_view> cases[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, encoded] : cases) {
    EXPECT_EQ(base64_encode(to_bytes(plain)), encoded);
    auto decoded = base64_decode(encoded);
    ASSERT_TRUE(decoded.has_value()) << encoded;
    EXPECT_EQ(*decoded, to_bytes(plain)) << encoded;
  }
}

TEST(Base64, MatchesOpenSslAndRoundTripsEveryLength) {
  std::mt19937 rng(42);
  for (std::size_t len = 0; len <= 70; ++len) {
    Bytes data(len);
    for (auto& b : data) b = static_cast<std::uint8_t>(rng());
    std::string expected(4 * ((len + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(expected.data()), data.data(),
                                  static_cast<int>(len));
    expected.resize(static_cast<std::size_t>(n));
    const std::string encoded = base64_encode(data);
    EXPECT_EQ(encoded, expected) << len;
    auto decoded = base64_decode(encoded);
    ASSERT_TRUE(decoded.has_value()) << len;
    EXPECT_EQ(*decoded, data) << len;
  }
}

TEST(Base64, RejectsMalformed) {
  const std::string_view malformed[] = {"Z",
                                        "Zg",
                                        "Zg=",
                                        "Zm9vY",
                                        "Zg=a",
                                        "Z===",
                                        "====",
                                        "=Zm9",
                                        "Zg==Zg==",
                                        "Zm9v\n",
                                        " Zm9v",
                                        "Zm9v ",
                                        "Zm-v",
                                        "Zm_v",
                                        "Zm9\x80",
                                        "Zm9v====",
                                        std::string_view("Zm\0v", 4)};
  for (std::string_view bad : malformed) {
    EXPECT_FALSE(base64_decode(bad).has_value()) << bad;
  }
}

TEST(Base64, AcceptsNonCanonicalTrailingBits) {
  // "Zh==" has non-zero unused bits; common decoders accept it and so do we.
  auto decoded = base64_decode("Zh==");
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded, to_bytes("f"));
}

TEST(UrlEncodeLower, KeepsUnreservedMinusTildeAndUsesLowerHex) {
  EXPECT_EQ(url_encode_lower("AZaz09-_."), "AZaz09-_.");
  EXPECT_EQ(url_encode_lower("a/b+c=d"), "a%2fb%2bc%3dd");
  EXPECT_EQ(url_encode_lower("~ !*()'&%"), "%7e%20%21%2a%28%29%27%26%25");
  EXPECT_EQ(url_encode_lower(std::string_view("\0\xff\n", 3)), "%00%ff%0a");
  EXPECT_EQ(url_encode_lower(""), "");
}

TEST(HmacSha256, Rfc4231Case2) {
  EXPECT_EQ(hex(hmac_sha256(to_bytes("Jefe"), "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(HmacSha256, EmptyKeyIsWellDefined) {
  // HMAC-SHA256("", "") from Python's hmac module.
  EXPECT_EQ(hex(hmac_sha256({}, "")),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

TEST(SasToken, V6NodeVector) {
  EXPECT_EQ(sign_b64("cGFzc3dvcmQ=", "uri\n12345"), "kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk=");
  auto signer = make_memory_signer("cGFzc3dvcmQ=");
  ASSERT_TRUE(signer.ok()) << signer.error();
  auto sig = (*signer)("uri\n12345");
  ASSERT_TRUE(sig.ok()) << sig.error();
  EXPECT_EQ(base64_encode(*sig), "kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk=");
  EXPECT_EQ(url_encode_lower(base64_encode(*sig)),
            "kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3d");
}

TEST(DeriveDeviceKey, V1GroupEnrollment) {
  auto key = derive_device_key(kGroupKeyV1, kRegIdV1);
  ASSERT_TRUE(key.ok()) << key.error();
  EXPECT_EQ(*key, kDerivedKeyV1);
}

TEST(DeriveDeviceKey, V1GroupKeyWithOtherRegistrationId) {
  auto key = derive_device_key(kGroupKeyV1, "myRegistrationId");
  ASSERT_TRUE(key.ok()) << key.error();
  EXPECT_EQ(*key, "dR+2HcE6m6ubRBPSDe5h9nzE0KMsITJf8fAbXPWDA4E=");
}

TEST(DeriveDeviceKey, RejectsBadInput) {
  auto not_b64 = derive_device_key("not base64!", kRegIdV1);
  ASSERT_FALSE(not_b64.ok());
  EXPECT_TRUE(HasSubstr(not_b64.error(), "group key"));
  EXPECT_FALSE(derive_device_key("", kRegIdV1).ok());
  EXPECT_FALSE(derive_device_key(kGroupKeyV1, "").ok());
}

TEST(SasStringToSign, V2EmbeddedSdkVector) {
  const std::string resource = sas_resource("0neFEEDC0DE", "myRegistrationId");
  EXPECT_EQ(resource, "0neFEEDC0DE%2fregistrations%2fmyRegistrationId");
  EXPECT_EQ(sas_string_to_sign(resource, 1578941692),
            "0neFEEDC0DE%2fregistrations%2fmyRegistrationId\n1578941692");
}

TEST(SasResource, EncodesEachPartButKeepsLiteralSeparators) {
  EXPECT_EQ(sas_resource("0ne/x", "a b+c"), "0ne%2fx%2fregistrations%2fa%20b%2bc");
}

TEST(SasToken, V3ShapeWithPlaceholderSignature) {
  // V3's signature text is a placeholder, so feed its bytes through a fake signer: the token must
  // have the V3 shape in the C SDK's form (lower-case escapes, skn=registration appended).
  auto placeholder = base64_decode("cS1eHM/lDjsRsrZV9508wOFrgmZk4g8FNg8NwHVSiSQ=");
  ASSERT_TRUE(placeholder.has_value());
  std::string seen;
  const Signer fake = [&](std::string_view to_sign) -> Expected<Bytes> {
    seen = std::string(to_sign);
    return *placeholder;
  };
  auto token = make_sas_token(fake, "0neFEEDC0DE", "myRegistrationId", 1578941692);
  ASSERT_TRUE(token.ok()) << token.error();
  EXPECT_EQ(seen, "0neFEEDC0DE%2fregistrations%2fmyRegistrationId\n1578941692");
  EXPECT_EQ(*token,
            "SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId"
            "&sig=cS1eHM%2flDjsRsrZV9508wOFrgmZk4g8FNg8NwHVSiSQ%3d&se=1578941692&skn=registration");
}

TEST(SasToken, IndependentVectorLowerCaseResource) {
  auto signer = make_memory_signer(kDerivedKeyV1);
  ASSERT_TRUE(signer.ok()) << signer.error();
  auto token = make_sas_token(*signer, "0ne00002193", kRegIdV1, 1578941692);
  ASSERT_TRUE(token.ok()) << token.error();
  EXPECT_EQ(*token,
            "SharedAccessSignature sr=0ne00002193%2fregistrations%2fsn-007-888-abc-mac-a1-b2-c3-"
            "d4-e5-f6&sig=v6f2%2bqZFcOJ3uLkND1h2zWV5jp3CANlKO0dt%2bO9Ekek%3d&se=1578941692"
            "&skn=registration");
}

TEST(SasToken, IndependentVectorsOtherResourceForms) {
  // The forms other SDKs sign (upper-case escapes, raw Node form); pins the HMAC over exactly the
  // text given, which the emulator relies on to verify any of them.
  EXPECT_EQ(sign_b64(kDerivedKeyV1, std::string("0ne00002193%2fregistrations%2f") +
                                        std::string(kRegIdV1) + "\n1578941692"),
            "v6f2+qZFcOJ3uLkND1h2zWV5jp3CANlKO0dt+O9Ekek=");
  EXPECT_EQ(sign_b64(kDerivedKeyV1, std::string("0ne00002193%2Fregistrations%2F") +
                                        std::string(kRegIdV1) + "\n1578941692"),
            "pKFpoBCzCr8qOTITp2wI12HeC87gNrgJonRe9XLVlNk=");
  EXPECT_EQ(sign_b64(kDerivedKeyV1, std::string("0ne00002193/registrations/") +
                                        std::string(kRegIdV1) + "\n1578941692"),
            "01tueFwY5J4dsM3XIl0PYaiEwZGgaDI+s9rkwjuQdHM=");
}

TEST(SasToken, DerivedKeySignsV2StringToSign) {
  auto device_key = derive_device_key(kGroupKeyV1, "myRegistrationId");
  ASSERT_TRUE(device_key.ok()) << device_key.error();
  auto signer = make_memory_signer(*device_key);
  ASSERT_TRUE(signer.ok()) << signer.error();
  auto token = make_sas_token(*signer, "0neFEEDC0DE", "myRegistrationId", 1578941692);
  ASSERT_TRUE(token.ok()) << token.error();
  EXPECT_EQ(*token,
            "SharedAccessSignature sr=0neFEEDC0DE%2fregistrations%2fmyRegistrationId"
            "&sig=kfQYLj6h63ser2C%2bEldj75fStUWVDvN0xmTxPw36aH4%3d&se=1578941692&skn=registration");
}

TEST(MakeMemorySigner, RejectsMalformedOrEmptyKey) {
  EXPECT_FALSE(make_memory_signer("not base64").ok());
  EXPECT_FALSE(make_memory_signer("").ok());
  EXPECT_FALSE(make_memory_signer("Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc").ok());
}

TEST(MakeMemorySigner, CopiesStayValidAfterOriginalIsGone) {
  Signer copy;
  {
    auto signer = make_memory_signer("cGFzc3dvcmQ=");
    ASSERT_TRUE(signer.ok());
    copy = *signer;
  }
  auto sig = copy("uri\n12345");
  ASSERT_TRUE(sig.ok());
  EXPECT_EQ(base64_encode(*sig), "kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk=");
}

TEST(MakeSasToken, PropagatesSignerFailure) {
  const Signer failing = [](std::string_view) -> Expected<Bytes> {
    return Error{"token is locked"};
  };
  auto token = make_sas_token(failing, "0ne", "dev", 1);
  ASSERT_FALSE(token.ok());
  EXPECT_TRUE(HasSubstr(token.error(), "token is locked"));
}

TEST(MakeSasToken, RejectsWrongSignatureLength) {
  const Signer short_sig = [](std::string_view) -> Expected<Bytes> { return Bytes(20, 1); };
  auto token = make_sas_token(short_sig, "0ne", "dev", 1);
  ASSERT_FALSE(token.ok());
  EXPECT_TRUE(HasSubstr(token.error(), "20 bytes"));
}

TEST(MakeSasToken, RejectsBadArguments) {
  auto signer = make_memory_signer("cGFzc3dvcmQ=");
  ASSERT_TRUE(signer.ok());
  EXPECT_FALSE(make_sas_token(*signer, "", "dev", 1).ok());
  EXPECT_FALSE(make_sas_token(*signer, "0ne", "", 1).ok());
  EXPECT_FALSE(make_sas_token(*signer, "0ne", "dev", -1).ok());
  EXPECT_FALSE(make_sas_token(Signer{}, "0ne", "dev", 1).ok());
}

}  // namespace
}  // namespace dpsd::core
