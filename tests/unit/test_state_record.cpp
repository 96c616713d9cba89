#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/state_record.hpp"

namespace dpsd::core {
namespace {

using nlohmann::json;

Assignment sample() {
  Assignment a;
  a.status = "assigned";
  a.assigned_hub = "contoso-hub.azure-devices.net";
  a.device_id = "gateway-01";
  a.registration_id = "gateway-01";
  a.id_scope = "0ne00ABCDEF";
  a.substatus = "initialAssignment";
  a.payload_json = R"({"site":"plant-7","tags":[1,2]})";
  a.provisioned_at_unix = 1795683600;  // 2026-11-26T09:00:00Z
  a.attestation = "symmetric_key";
  a.enrollment = "group";
  a.key_uri = "file:/etc/dpsd/device.key";
  a.endpoint = "global.azure-devices-provisioning.net:8883";
  a.fingerprint = "sha256:" + std::string(64, 'a');
  return a;
}

json sample_json() {
  return json::parse(serialize_state(sample()));
}

std::string error_of(const json& j) {
  const auto parsed = parse_state(j.dump());
  EXPECT_FALSE(parsed.ok()) << j.dump();
  return parsed.ok() ? std::string() : parsed.error();
}

// --- serialisation -------------------------------------------------------------------------

TEST(StateRecord, RoundTripsEveryField) {
  const Assignment a = sample();
  const auto parsed = parse_state(serialize_state(a));
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(*parsed, a);
}

TEST(StateRecord, RoundTripsWithoutPayload) {
  Assignment a = sample();
  a.payload_json.reset();
  const std::string text = serialize_state(a);
  EXPECT_TRUE(json::parse(text).at("payload").is_null());
  const auto parsed = parse_state(text);
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(*parsed, a);
}

TEST(StateRecord, RoundTripsNonObjectPayload) {
  Assignment a = sample();
  a.payload_json = "[1,\"two\"]";
  const auto parsed = parse_state(serialize_state(a));
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(parsed->payload_json, a.payload_json);
}

TEST(StateRecord, EmbedsPayloadAsJsonNotAsString) {
  const json j = sample_json();
  ASSERT_TRUE(j.at("payload").is_object());
  EXPECT_EQ(j.at("payload").at("site"), "plant-7");
}

TEST(StateRecord, InvalidPayloadTextIsRecordedAsNull) {
  Assignment a = sample();
  a.payload_json = "{not json";
  const std::string text = serialize_state(a);
  EXPECT_TRUE(json::parse(text).at("payload").is_null());
}

TEST(StateRecord, WritesEveryDocumentedKeyInOrder) {
  const std::string text = serialize_state(sample());
  const std::vector<std::string> keys = {
      "schema",    "status",   "assignedHub",   "deviceId",          "registrationId", "idScope",
      "substatus", "payload",  "provisionedAt", "provisionedAtUnix", "attestation",    "enrollment",
      "keyUri",    "endpoint", "fingerprint",   "transport"};
  std::size_t last = 0;
  for (const auto& key : keys) {
    const auto at = text.find("\"" + key + "\":");
    ASSERT_NE(at, std::string::npos) << key;
    EXPECT_GT(at, last) << key;
    last = at;
  }
  EXPECT_EQ(json::parse(text).size(), keys.size());
}

TEST(StateRecord, IsPrettyPrintedWithTrailingNewline) {
  const std::string text = serialize_state(sample());
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  EXPECT_NE(text.find("\n  \"schema\": 1,"), std::string::npos) << text;
}

TEST(StateRecord, RendersProvisionedAtAsRfc3339Utc) {
  EXPECT_EQ(sample_json().at("provisionedAt"), "2026-11-26T09:00:00Z");
  Assignment a = sample();
  a.provisioned_at_unix = 0;
  EXPECT_EQ(json::parse(serialize_state(a)).at("provisionedAt"), "1970-01-01T00:00:00Z");
}

TEST(StateRecord, ProvisionedAtUnixIsTheSourceOfTruth) {
  json j = sample_json();
  j["provisionedAt"] = "1999-01-01T00:00:00Z";
  const auto parsed = parse_state(j.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(parsed->provisioned_at_unix, 1795683600);
}

TEST(StateRecord, SerialisesInvalidUtf8WithoutThrowing) {
  Assignment a = sample();
  a.assigned_hub = "bad\xff\xfe.azure-devices.net";
  std::string text;
  EXPECT_NO_THROW(text = serialize_state(a));
  const auto parsed = parse_state(text);
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_NE(parsed->assigned_hub, a.assigned_hub);  // replaced, not kept raw
}

TEST(StateRecord, KeepsNoKeyMaterial) {
  // Only the key's URI is recorded; nothing in the record could hold a key.
  const json j = sample_json();
  EXPECT_EQ(j.at("keyUri"), "file:/etc/dpsd/device.key");
  EXPECT_FALSE(j.contains("key"));
  EXPECT_FALSE(j.contains("sasToken"));
}

// --- parsing errors --------------------------------------------------------------------------

TEST(StateRecord, RejectsWrongSchema) {
  json j = sample_json();
  j["schema"] = 7;
  EXPECT_EQ(error_of(j), "state.json: schema 7 is not supported (expected 1)");
  j["schema"] = 0;
  EXPECT_EQ(error_of(j), "state.json: schema 0 is not supported (expected 1)");
}

TEST(StateRecord, RejectsMissingOrMistypedSchema) {
  json j = sample_json();
  j["schema"] = "1";
  EXPECT_EQ(error_of(j), "state.json: \"schema\" must be an integer");
  j["schema"] = 1.5;
  EXPECT_EQ(error_of(j), "state.json: \"schema\" must be an integer");
  j.erase("schema");
  EXPECT_EQ(error_of(j), "state.json: \"schema\" must be an integer");
}

TEST(StateRecord, SchemaIsCheckedBeforeOtherFields) {
  const json j = {{"schema", 2}, {"somethingNew", true}};
  EXPECT_EQ(error_of(j), "state.json: schema 2 is not supported (expected 1)");
}

TEST(StateRecord, RejectsEachMissingStringField) {
  for (const char* field :
       {"status", "assignedHub", "deviceId", "registrationId", "idScope", "substatus",
        "provisionedAt", "attestation", "enrollment", "keyUri", "endpoint", "fingerprint"}) {
    json j = sample_json();
    j.erase(field);
    const std::string error = error_of(j);
    EXPECT_NE(error.find(std::string("\"") + field + "\" must be"), std::string::npos)
        << field << ": " << error;
    EXPECT_EQ(error.rfind("state.json: ", 0), 0U) << error;
  }
}

TEST(StateRecord, RejectsEachMistypedStringField) {
  for (const char* field :
       {"status", "assignedHub", "deviceId", "registrationId", "idScope", "substatus",
        "provisionedAt", "attestation", "enrollment", "keyUri", "endpoint", "fingerprint"}) {
    for (const json& wrong :
         {json(42), json(nullptr), json(true), json::array({"x"}), json::object({{"x", 1}})}) {
      json j = sample_json();
      j[field] = wrong;
      const std::string error = error_of(j);
      EXPECT_NE(error.find(std::string("\"") + field + "\" must be"), std::string::npos)
          << field << " = " << wrong.dump() << ": " << error;
    }
  }
}

TEST(StateRecord, RejectsEmptyHubDeviceIdAndStatus) {
  json j = sample_json();
  j["assignedHub"] = "";
  EXPECT_EQ(error_of(j), "state.json: \"assignedHub\" must be a non-empty string");
  j = sample_json();
  j["deviceId"] = "";
  EXPECT_EQ(error_of(j), "state.json: \"deviceId\" must be a non-empty string");
  j = sample_json();
  j["status"] = "";
  EXPECT_EQ(error_of(j), "state.json: \"status\" must be a non-empty string");
}

TEST(StateRecord, AcceptsEmptyOptionalStrings) {
  json j = sample_json();
  j["substatus"] = "";
  j["keyUri"] = "";
  const auto parsed = parse_state(j.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(parsed->substatus, "");
}

TEST(StateRecord, RejectsMissingOrMistypedProvisionedAtUnix) {
  json j = sample_json();
  j.erase("provisionedAtUnix");
  EXPECT_EQ(error_of(j), "state.json: \"provisionedAtUnix\" must be an integer");
  for (const json& wrong : {json("1795683600"), json(1.5), json(nullptr)}) {
    j["provisionedAtUnix"] = wrong;
    EXPECT_EQ(error_of(j), "state.json: \"provisionedAtUnix\" must be an integer") << wrong;
  }
  j["provisionedAtUnix"] = -1;
  EXPECT_EQ(error_of(j), "state.json: \"provisionedAtUnix\" must be a non-negative integer");
  j["provisionedAtUnix"] = 18446744073709551615ULL;
  EXPECT_EQ(error_of(j),
            "state.json: \"provisionedAtUnix\" must be an integer that fits in 64 bits");
}

TEST(StateRecord, RejectsMissingPayload) {
  json j = sample_json();
  j.erase("payload");
  EXPECT_NE(error_of(j).find("\"payload\""), std::string::npos);
}

TEST(StateRecord, PayloadNullMeansNone) {
  json j = sample_json();
  j["payload"] = nullptr;
  const auto parsed = parse_state(j.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_FALSE(parsed->payload_json.has_value());
}

TEST(StateRecord, PayloadObjectIsCompactJson) {
  json j = sample_json();
  j["payload"] = {{"b", 1}, {"a", {{"nested", true}}}};
  const auto parsed = parse_state(j.dump(4));
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  ASSERT_TRUE(parsed->payload_json.has_value());
  EXPECT_EQ(json::parse(*parsed->payload_json), j["payload"]);
  EXPECT_EQ(parsed->payload_json->find('\n'), std::string::npos);
  EXPECT_EQ(parsed->payload_json->find(' '), std::string::npos);
}

TEST(StateRecord, IgnoresUnknownFields) {
  json j = sample_json();
  j["addedLater"] = {1, 2, 3};
  EXPECT_TRUE(parse_state(j.dump()).ok());
}

TEST(StateRecord, TransportRoundTripsAndDefaultsToMqtt) {
  Assignment a = sample();
  a.transport = "mqtt-ws";
  const auto parsed = parse_state(serialize_state(a));
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(parsed->transport, "mqtt-ws");

  json older = sample_json();  // a file from before the field existed
  older.erase("transport");
  const auto old_parsed = parse_state(older.dump());
  ASSERT_TRUE(old_parsed.ok()) << old_parsed.error();
  EXPECT_EQ(old_parsed->transport, "mqtt");
}

TEST(StateRecord, RejectsUnknownTransport) {
  for (const json& value : {json("auto"), json("MQTT"), json(443), json(nullptr)}) {
    json j = sample_json();
    j["transport"] = value;
    EXPECT_NE(error_of(j).find("transport"), std::string::npos) << value.dump();
  }
}

TEST(StateRecord, RejectsTruncatedJson) {
  const std::string text = serialize_state(sample());
  for (const std::size_t keep : {text.size() / 2, text.size() - 3, std::size_t{1}}) {
    const auto parsed = parse_state(text.substr(0, keep));
    ASSERT_FALSE(parsed.ok()) << keep;
    EXPECT_EQ(parsed.error(), "state.json: not valid JSON (truncated or corrupt)");
  }
}

TEST(StateRecord, RejectsEmptyFile) {
  for (const char* text : {"", "  \n"}) {
    const auto parsed = parse_state(text);
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.error(), "state.json: the file is empty");
  }
}

TEST(StateRecord, RejectsGarbageWithoutThrowing) {
  for (const std::string& text :
       {std::string("\0\0\0\0", 4), std::string("{\"schema\":1,}"), std::string("\xff\xfe{}"),
        std::string("{\"schema\":1} trailing"), std::string("// comment\n{}")}) {
    Expected<Assignment> parsed = Error{"not parsed yet"};
    EXPECT_NO_THROW(parsed = parse_state(text));
    EXPECT_FALSE(parsed.ok());
  }
}

TEST(StateRecord, RejectsNonObject) {
  for (const char* text : {"[]", "[1,2]", "\"state\"", "42", "null", "true"}) {
    const auto parsed = parse_state(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.error(), "state.json: expected a JSON object") << text;
  }
}

// --- fingerprint -----------------------------------------------------------------------------

FingerprintInputs sample_inputs() {
  return {"0ne00ABCDEF",   "gateway-01", "global.azure-devices-provisioning.net:8883",
          "symmetric_key", "group",      "file:/etc/dpsd/device.key",
          "tag-1234"};
}

TEST(Fingerprint, HasTheDocumentedForm) {
  const std::string fp = compute_fingerprint(sample_inputs());
  ASSERT_EQ(fp.size(), 7U + 64U) << fp;
  EXPECT_EQ(fp.rfind("sha256:", 0), 0U);
  for (const char c : fp.substr(7)) {
    EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << fp;
  }
}

TEST(Fingerprint, IsStable) {
  EXPECT_EQ(compute_fingerprint(sample_inputs()), compute_fingerprint(sample_inputs()));
  // Pinned so an accidental change of the encoding (which would re-provision every device in the
  // field on upgrade) fails here first. Update deliberately, with a note in the changelog.
  // The value was computed independently (Python hashlib over the same encoding).
  EXPECT_EQ(compute_fingerprint(sample_inputs()),
            "sha256:a2470e656ee516f44c70c2a6b7391f6b961927f54269f3b0e9a0fbeb9289ba8e");
}

TEST(Fingerprint, EveryInputChangesIt) {
  std::set<std::string> seen = {compute_fingerprint(sample_inputs())};
  std::string FingerprintInputs::*const fields[] = {
      &FingerprintInputs::id_scope,   &FingerprintInputs::registration_id,
      &FingerprintInputs::endpoint,   &FingerprintInputs::attestation,
      &FingerprintInputs::enrollment, &FingerprintInputs::key_uri,
      &FingerprintInputs::key_tag};
  for (auto field : fields) {
    FingerprintInputs changed = sample_inputs();
    changed.*field += "x";
    EXPECT_TRUE(seen.insert(compute_fingerprint(changed)).second);
  }
  EXPECT_EQ(seen.size(), 8U);
}

TEST(Fingerprint, FieldBoundariesMatter) {
  FingerprintInputs a{};
  a.id_scope = "ab";
  a.registration_id = "c";
  FingerprintInputs b{};
  b.id_scope = "a";
  b.registration_id = "bc";
  EXPECT_NE(compute_fingerprint(a), compute_fingerprint(b));

  // Moving a value to the neighbouring field must change it too.
  FingerprintInputs c{};
  c.key_uri = "k";
  FingerprintInputs d{};
  d.key_tag = "k";
  EXPECT_NE(compute_fingerprint(c), compute_fingerprint(d));
}

// --- env file --------------------------------------------------------------------------------

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto end = text.find('\n', start);
    if (end == std::string::npos) {
      lines.push_back(text.substr(start));
      break;
    }
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

TEST(EnvFile, RendersAllVariablesUnquotedWhenPlain) {
  const std::string env = render_env_file(sample());
  EXPECT_EQ(env,
            "# Written by dpsd; do not edit.\n"
            "IOTHUB_HOSTNAME=contoso-hub.azure-devices.net\n"
            "IOTHUB_DEVICE_ID=gateway-01\n"
            "DPS_REGISTRATION_ID=gateway-01\n"
            "DPS_ID_SCOPE=0ne00ABCDEF\n"
            "DPS_SUBSTATUS=initialAssignment\n");
}

TEST(EnvFile, AllowedCharactersStayUnquoted) {
  Assignment a = sample();
  a.device_id = "Az09._:-";
  a.substatus = "";
  const auto lines = lines_of(render_env_file(a));
  EXPECT_EQ(lines[2], "IOTHUB_DEVICE_ID=Az09._:-");
  EXPECT_EQ(lines[5], "DPS_SUBSTATUS=");
}

TEST(EnvFile, QuotesAndEscapesSpecialCharacters) {
  Assignment a = sample();
  a.device_id = "dev ice";
  EXPECT_EQ(lines_of(render_env_file(a))[2], "IOTHUB_DEVICE_ID=\"dev ice\"");
  a.device_id = "a\"b";
  EXPECT_EQ(lines_of(render_env_file(a))[2], R"(IOTHUB_DEVICE_ID="a\"b")");
  a.device_id = "a\\b";
  EXPECT_EQ(lines_of(render_env_file(a))[2], R"(IOTHUB_DEVICE_ID="a\\b")");
  a.device_id = "$HOME";
  EXPECT_EQ(lines_of(render_env_file(a))[2], R"(IOTHUB_DEVICE_ID="\$HOME")");
  a.device_id = "`id`";
  EXPECT_EQ(lines_of(render_env_file(a))[2], R"(IOTHUB_DEVICE_ID="\`id\`")");
  a.device_id = "it's=#1";
  EXPECT_EQ(lines_of(render_env_file(a))[2], R"(IOTHUB_DEVICE_ID="it's=#1")");
}

TEST(EnvFile, HostileHubCannotInjectLines) {
  Assignment a = sample();
  a.assigned_hub = "evil.net\nLD_PRELOAD=/tmp/x.so\r\nIOTHUB_DEVICE_ID=other";
  const std::string env = render_env_file(a);
  const auto lines = lines_of(env);
  ASSERT_EQ(lines.size(), 6U) << env;
  EXPECT_EQ(lines[1], "IOTHUB_HOSTNAME=\"evil.net?LD_PRELOAD=/tmp/x.so??IOTHUB_DEVICE_ID=other\"");
  EXPECT_EQ(lines[2], "IOTHUB_DEVICE_ID=gateway-01");
  for (const auto& line : lines) EXPECT_NE(line.rfind("LD_PRELOAD", 0), 0U);
}

TEST(EnvFile, ReplacesControlAndNonAsciiBytes) {
  Assignment a = sample();
  a.assigned_hub = std::string(
      "a\0b\tc\x7f"
      "d\xc3\xa9",
      9);
  EXPECT_EQ(lines_of(render_env_file(a))[1], "IOTHUB_HOSTNAME=\"a?b?c?d??\"");
}

TEST(EnvFile, HostileValueCombiningEverything) {
  Assignment a = sample();
  a.registration_id = "x\"; rm -rf / #\n$(id)`id`\\";
  const std::string env = render_env_file(a);
  const auto lines = lines_of(env);
  ASSERT_EQ(lines.size(), 6U) << env;
  EXPECT_EQ(lines[3], R"(DPS_REGISTRATION_ID="x\"; rm -rf / #?\$(id)\`id\`\\")");
}

TEST(EnvFile, EveryLineEndsWithNewline) {
  const std::string env = render_env_file(sample());
  ASSERT_FALSE(env.empty());
  EXPECT_EQ(env.back(), '\n');
}

}  // namespace
}  // namespace dpsd::core
