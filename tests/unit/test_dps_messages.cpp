// Request bodies and reply parsing, shared/dps-protocol.md section 4 and section 7 items 9-15.
#include <gtest/gtest.h>

#include <string>

#include "core/dps_messages.hpp"

namespace dpsd::core {
namespace {

::testing::AssertionResult HasSubstr(const std::string& text, std::string_view part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << '"' << text << "\" does not contain \"" << part << '"';
}

// Parses a body that must fail and returns the message (empty if it unexpectedly succeeded).
std::string failure(std::string_view body) {
  auto parsed = parse_operation_status(body);
  EXPECT_FALSE(parsed.ok()) << body;
  return parsed.ok() ? std::string() : parsed.error();
}

TEST(RegisterBody, WithoutPayload) {
  EXPECT_EQ(register_body("myRegistrationId", std::nullopt),
            R"({"registrationId":"myRegistrationId"})");
}

TEST(RegisterBody, WithPayloadCompacted) {
  EXPECT_EQ(register_body("myRegistrationId", std::string(R"( { "modelId" : "dtmi:a:b;1" } )")),
            R"({"registrationId":"myRegistrationId","payload":{"modelId":"dtmi:a:b;1"}})");
  EXPECT_EQ(register_body("d", std::string("[1, 2]")), R"({"registrationId":"d","payload":[1,2]})");
}

TEST(RegisterBody, EscapesRegistrationId) {
  EXPECT_EQ(register_body("a\"b\\c", std::nullopt), R"({"registrationId":"a\"b\\c"})");
}

TEST(RegisterBody, InvalidPayloadIsDroppedNotSent) {
  EXPECT_EQ(register_body("d", std::string("{not json")), R"({"registrationId":"d"})");
}

TEST(RegisterBody, InvalidUtf8RegistrationIdDoesNotThrow) {
  const std::string body = register_body(std::string_view("a\xff", 2), std::nullopt);
  EXPECT_TRUE(HasSubstr(body, "registrationId"));
}

TEST(ParseOperationStatus, RegisterReply202) {
  auto s = parse_operation_status(
      R"({"operationId":"4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d","status":"assigning"})");
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ(s->operation_id, "4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d");
  EXPECT_EQ(s->state, OperationState::Assigning);
  EXPECT_EQ(s->status_text, "assigning");
  EXPECT_FALSE(s->registration_state.has_value());
}

TEST(ParseOperationStatus, RealTrace202) {
  auto s = parse_operation_status(
      R"({"operationId":"5.71cf7e385566aa10.4469ed4c-dc19-4af8-8b36-9ef6396ac1b3","status":"assigning"})");
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ(s->operation_id, "5.71cf7e385566aa10.4469ed4c-dc19-4af8-8b36-9ef6396ac1b3");
  EXPECT_EQ(s->state, OperationState::Assigning);
}

TEST(ParseOperationStatus, PollReply202WithState) {
  auto s = parse_operation_status(
      R"({"operationId":"4.x","status":"assigning","registrationState":{"registrationId":"paho-sample-device1","status":"assigning"}})");
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ(s->state, OperationState::Assigning);
  ASSERT_TRUE(s->registration_state.has_value());
  EXPECT_EQ(s->registration_state->registration_id, "paho-sample-device1");
  EXPECT_EQ(s->registration_state->status, "assigning");
}

constexpr std::string_view kAssigned =
    R"({"operationId":"4.d0a671905ea5b2c8.42d78160-4c78-479e-8be7-61d5e55dac0d","status":"assigned",
 "registrationState":{"x509":{},"registrationId":"myRegistrationId",
  "createdDateTimeUtc":"2020-04-10T03:11:13.0276997Z","assignedHub":"contoso.azure-devices.net",
  "deviceId":"my-device-id1","status":"assigned","substatus":"initialAssignment",
  "lastUpdatedDateTimeUtc":"2020-04-10T03:11:13.2096201Z",
  "etag":"IjYxMDA4ZDQ2LTAwMDAtMDEwMC0wMDAwLTVlOGZlM2QxMDAwMCI=",
  "payload":{ "hello" : "world", "n" : [1, 2, {"x": null}] }}})";

TEST(ParseOperationStatus, Assigned200WithPayload) {
  auto s = parse_operation_status(kAssigned);
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ(s->operation_id, "4.d0a671905ea5b2c8.42d78160-4c78-479e-8be7-61d5e55dac0d");
  EXPECT_EQ(s->state, OperationState::Assigned);
  ASSERT_TRUE(s->registration_state.has_value());
  const RegistrationState& r = *s->registration_state;
  EXPECT_EQ(r.registration_id, "myRegistrationId");
  EXPECT_EQ(r.assigned_hub, "contoso.azure-devices.net");
  EXPECT_EQ(r.device_id, "my-device-id1");
  EXPECT_EQ(r.status, "assigned");
  EXPECT_EQ(r.substatus, "initialAssignment");
  EXPECT_EQ(r.created_utc, "2020-04-10T03:11:13.0276997Z");
  EXPECT_EQ(r.last_updated_utc, "2020-04-10T03:11:13.2096201Z");
  EXPECT_EQ(r.etag, "IjYxMDA4ZDQ2LTAwMDAtMDEwMC0wMDAwLTVlOGZlM2QxMDAwMCI=");
  EXPECT_FALSE(r.error_code.has_value());
  EXPECT_EQ(r.payload_json, R"({"hello":"world","n":[1,2,{"x":null}]})");
}

TEST(ParseOperationStatus, AssignedWithoutPayload) {
  auto s = parse_operation_status(
      R"({"operationId":"o","status":"assigned","registrationState":{"assignedHub":"h.azure-devices.net","deviceId":"d","payload":null}})");
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_FALSE(s->registration_state->payload_json.has_value());
}

TEST(ParseOperationStatus, Failed400207) {
  auto s = parse_operation_status(
      R"({"operationId":"4.x","status":"failed","registrationState":{"registrationId":"myRegistrationId","createdDateTimeUtc":"2020-04-10T05:24:22.1Z","status":"failed","errorCode":400207,"errorMessage":"Custom allocation failed with status code: 400","lastUpdatedDateTimeUtc":"2020-04-10T05:24:22.4718526Z","etag":"abc"}})");
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ(s->state, OperationState::Failed);
  ASSERT_TRUE(s->registration_state.has_value());
  EXPECT_EQ(s->registration_state->error_code, 400207);
  EXPECT_EQ(s->registration_state->error_message, "Custom allocation failed with status code: 400");
}

TEST(ParseOperationStatus, Disabled) {
  auto s = parse_operation_status(
      R"({"operationId":"","status":"disabled","registrationState":{"registrationId":"myRegistrationId","status":"disabled"}})");
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ(s->state, OperationState::Disabled);
  EXPECT_EQ(s->operation_id, "");
}

TEST(ParseOperationStatus, UnassignedAndUnknown) {
  auto unassigned = parse_operation_status(R"({"operationId":"o","status":"unassigned"})");
  ASSERT_TRUE(unassigned.ok()) << unassigned.error();
  EXPECT_EQ(unassigned->state, OperationState::Unassigned);

  for (const char* text : {"blacklisted", "Assigned", "", "assigned "}) {
    const std::string body = std::string(R"({"operationId":"o","status":")") + text + "\"}";
    auto s = parse_operation_status(body);
    ASSERT_TRUE(s.ok()) << body;
    EXPECT_EQ(s->state, OperationState::Unknown) << body;
    EXPECT_EQ(s->status_text, text);
  }
}

TEST(ParseOperationStatus, ExtraFieldsAreIgnored) {
  auto s = parse_operation_status(
      R"({"operationId":"o","status":"assigning","future":[1,{"a":2}],"registrationState":{"tpm":{"authenticationKey":"k"},"symmetricKey":{"enrollmentGroupId":"g"},"issuedCertificateChain":["x"]}})");
  ASSERT_TRUE(s.ok()) << s.error();
}

TEST(ParseOperationStatus, ErrorBodyIsNotAnOperationStatus) {
  // A 401 body on the wrong path: no status field.
  EXPECT_TRUE(HasSubstr(
      failure(
          R"({"errorCode":401002,"trackingId":"8ad0463c-6427-4479-9dfa-3e8bb7003e9b","message":"Invalid certificate.","timestampUtc":"2020-04-10T05:24:22.4718526Z"})"),
      "reply.status is missing"));
}

TEST(ParseOperationStatus, HostileTopLevel) {
  EXPECT_TRUE(HasSubstr(failure("123"), "reply is not a JSON object"));
  EXPECT_TRUE(HasSubstr(failure("[]"), "reply is not a JSON object"));
  EXPECT_TRUE(HasSubstr(failure(R"("assigned")"), "reply is not a JSON object"));
  EXPECT_TRUE(HasSubstr(failure("null"), "reply is not a JSON object"));
  EXPECT_TRUE(HasSubstr(failure(R"({"status":5})"), "reply.status is not a string"));
  EXPECT_TRUE(HasSubstr(failure(R"({"status":null})"), "reply.status is missing"));
  EXPECT_TRUE(HasSubstr(failure(R"({"operationId":7,"status":"assigning"})"),
                        "reply.operationId is not a string"));
}

TEST(ParseOperationStatus, MalformedJson) {
  EXPECT_TRUE(HasSubstr(failure(""), "reply is not valid JSON"));
  EXPECT_TRUE(HasSubstr(failure("   "), "reply is not valid JSON"));
  const std::string truncated = failure(R"({"operationId":"4.x","status":"assig)");
  EXPECT_TRUE(HasSubstr(truncated, "reply is not valid JSON at byte "));
  EXPECT_TRUE(HasSubstr(failure(R"({"status":"assigned",})"), "reply is not valid JSON"));
  EXPECT_TRUE(HasSubstr(failure(R"({"status":"assigned"} trailing)"), "reply is not valid JSON"));
  EXPECT_TRUE(HasSubstr(failure(R"({'status':'assigned'})"), "reply is not valid JSON"));
  EXPECT_TRUE(HasSubstr(failure(R"({"status":"assigned"/*c*/})"), "reply is not valid JSON"));
  EXPECT_TRUE(HasSubstr(failure(R"({"n":1e999,"status":"assigning"})"), "reply is not valid JSON"));
  EXPECT_TRUE(
      HasSubstr(failure(std::string_view("{\"status\":\"a\0\"}", 15)), "reply is not valid JSON"));
}

TEST(ParseOperationStatus, ErrorPositionIsTheOffendingByte) {
  EXPECT_TRUE(HasSubstr(failure(R"({"status":x})"), "at byte 11"));
}

TEST(ParseOperationStatus, InvalidUtf8) {
  EXPECT_TRUE(HasSubstr(failure("{\"operationId\":\"\xff\xfe\",\"status\":\"assigning\"}"),
                        "reply is not valid JSON"));
  EXPECT_TRUE(HasSubstr(failure("{\"operationId\":\"\xc0\xaf\",\"status\":\"assigning\"}"),
                        "reply is not valid JSON"));
  // Truncated multi-byte sequence inside the payload.
  EXPECT_TRUE(HasSubstr(
      failure("{\"status\":\"assigned\",\"registrationState\":{\"payload\":\"\xe2\x82\"}}"),
      "reply is not valid JSON"));
  // A lone surrogate escape is not a character either.
  EXPECT_TRUE(HasSubstr(failure(R"({"operationId":"\ud800","status":"assigning"})"),
                        "reply is not valid JSON"));
}

TEST(ParseOperationStatus, DeeplyNestedJunk) {
  const std::string deep = R"({"status":"assigning","junk":)" + std::string(100000, '[') +
                           std::string(100000, ']') + "}";
  EXPECT_TRUE(HasSubstr(failure(deep), "nested deeper"));
  const std::string deep_unclosed = std::string(1000000, '{');
  EXPECT_FALSE(parse_operation_status(deep_unclosed).ok());
  const std::string deep_payload =
      R"({"status":"assigned","registrationState":{"assignedHub":"h","deviceId":"d","payload":)" +
      std::string(5000, '[') + std::string(5000, ']') + "}}";
  EXPECT_TRUE(HasSubstr(failure(deep_payload), "nested deeper"));
}

TEST(ParseOperationStatus, ModeratelyNestedPayloadIsFine) {
  const std::string body =
      R"({"status":"assigned","registrationState":{"assignedHub":"h","deviceId":"d","payload":)" +
      std::string(30, '[') + std::string(30, ']') + "}}";
  auto s = parse_operation_status(body);
  ASSERT_TRUE(s.ok()) << s.error();
  EXPECT_EQ(s->registration_state->payload_json, std::string(30, '[') + std::string(30, ']'));
}

TEST(ParseOperationStatus, RegistrationStateMustBeAnObject) {
  EXPECT_TRUE(HasSubstr(failure(R"({"status":"assigning","registrationState":"assigned"})"),
                        "registrationState is not an object"));
  EXPECT_TRUE(HasSubstr(failure(R"({"status":"assigning","registrationState":[]})"),
                        "registrationState is not an object"));
  auto null_state = parse_operation_status(R"({"status":"assigning","registrationState":null})");
  ASSERT_TRUE(null_state.ok()) << null_state.error();
  EXPECT_FALSE(null_state->registration_state.has_value());
}

TEST(ParseOperationStatus, AssignedNeedsHubAndDevice) {
  EXPECT_TRUE(HasSubstr(failure(R"({"status":"assigned"})"), "registrationState is missing"));
  EXPECT_TRUE(HasSubstr(
      failure(R"({"status":"assigned","registrationState":{"assignedHub":"h.azure-devices.net"}})"),
      "registrationState.deviceId is missing"));
  EXPECT_TRUE(HasSubstr(failure(R"({"status":"assigned","registrationState":{"deviceId":"d"}})"),
                        "registrationState.assignedHub is missing"));
  EXPECT_TRUE(HasSubstr(
      failure(R"({"status":"assigned","registrationState":{"assignedHub":"","deviceId":"d"}})"),
      "registrationState.assignedHub is empty"));
  EXPECT_TRUE(HasSubstr(
      failure(R"({"status":"assigned","registrationState":{"assignedHub":"h","deviceId":""}})"),
      "registrationState.deviceId is empty"));
  EXPECT_TRUE(HasSubstr(
      failure(R"({"status":"assigned","registrationState":{"assignedHub":"h","deviceId":5}})"),
      "registrationState.deviceId is not a string"));
  EXPECT_TRUE(HasSubstr(
      failure(R"({"status":"assigned","registrationState":{"assignedHub":null,"deviceId":"d"}})"),
      "registrationState.assignedHub is missing"));
}

TEST(ParseOperationStatus, FieldTypesAreChecked) {
  EXPECT_TRUE(
      HasSubstr(failure(R"({"status":"failed","registrationState":{"errorCode":"400207"}})"),
                "registrationState.errorCode is not an integer"));
  EXPECT_TRUE(HasSubstr(failure(R"({"status":"failed","registrationState":{"errorCode":4.5}})"),
                        "registrationState.errorCode is not an integer"));
  EXPECT_TRUE(HasSubstr(
      failure(R"({"status":"failed","registrationState":{"errorCode":18446744073709551615}})"),
      "registrationState.errorCode is out of range"));
  EXPECT_TRUE(
      HasSubstr(failure(R"({"status":"failed","registrationState":{"errorMessage":{"a":1}}})"),
                "registrationState.errorMessage is not a string"));
  EXPECT_TRUE(HasSubstr(failure(R"({"status":"assigning","registrationState":{"etag":true}})"),
                        "registrationState.etag is not a string"));
  auto negative =
      parse_operation_status(R"({"status":"failed","registrationState":{"errorCode":-1}})");
  ASSERT_TRUE(negative.ok()) << negative.error();
  EXPECT_EQ(negative->registration_state->error_code, -1);
}

TEST(ParseServiceError, Documented401) {
  const ServiceError e = parse_service_error(
      R"({"errorCode":401002,"trackingId":"8ad0463c-6427-4479-9dfa-3e8bb7003e9b","message":"Invalid certificate.","timestampUtc":"2020-04-10T05:24:22.4718526Z"})");
  EXPECT_EQ(e.error_code, 401002);
  EXPECT_EQ(e.message, "Invalid certificate.");
  EXPECT_EQ(e.tracking_id, "8ad0463c-6427-4479-9dfa-3e8bb7003e9b");
}

TEST(ParseServiceError, OtherDocumentedBodies) {
  const ServiceError e = parse_service_error(
      R"({"errorCode":400004,"trackingId":"","message":"BadRequest","timestampUtc":"x","info":{"k":"v"}})");
  EXPECT_EQ(e.error_code, 400004);
  EXPECT_EQ(e.message, "BadRequest");
  EXPECT_EQ(e.tracking_id, "");
}

TEST(ParseServiceError, LenientOnJunk) {
  for (std::string_view body :
       {std::string_view(""), std::string_view("123"), std::string_view("[]"),
        std::string_view("{\"errorCode\":"), std::string_view("\xff"), std::string_view("null")}) {
    const ServiceError e = parse_service_error(body);
    EXPECT_FALSE(e.error_code.has_value()) << body;
    EXPECT_EQ(e.message, "") << body;
    EXPECT_EQ(e.tracking_id, "") << body;
  }
  const ServiceError mixed =
      parse_service_error(R"({"errorCode":"401000","message":7,"trackingId":"t"})");
  EXPECT_FALSE(mixed.error_code.has_value());
  EXPECT_EQ(mixed.message, "");
  EXPECT_EQ(mixed.tracking_id, "t");
}

// issue 11 item 5: the spec makes "status" optional; what a body without it means.
TEST(ParseOperationStatus, MissingStatusIsReadFromWhatTheBodySays) {
  auto from_state =
      parse_operation_status(R"({"operationId":"o","registrationState":{"status":"assigning"}})");
  ASSERT_TRUE(from_state) << from_state.error();
  EXPECT_EQ(from_state->state, OperationState::Assigning);

  auto assigned = parse_operation_status(
      R"({"operationId":"o","registrationState":{"assignedHub":"h.example","deviceId":"d"}})");
  ASSERT_TRUE(assigned) << assigned.error();
  EXPECT_EQ(assigned->state, OperationState::Assigned);
  EXPECT_EQ(assigned->registration_state->assigned_hub, "h.example");

  auto running = parse_operation_status(R"({"operationId":"o"})");
  ASSERT_TRUE(running) << running.error();
  EXPECT_EQ(running->state, OperationState::Assigning);

  auto nothing = parse_operation_status(R"({"registrationState":{}})");
  ASSERT_FALSE(nothing);
  EXPECT_EQ(nothing.error(), "reply.status is missing");
}

TEST(ParseOperationStatus, AssignmentValuesAreValidated) {
  const struct {
    const char* body;
    const char* says;
  } cases[] = {
      {R"({"status":"assigned","registrationState":{"assignedHub":"evil$(id)x","deviceId":"d"}})",
       "reply.registrationState.assignedHub is not a DNS host name"},
      {R"({"status":"assigned","registrationState":{"assignedHub":"h.example","deviceId":"d e"}})",
       "reply.registrationState.deviceId has byte 0x20"},
      {R"({"status":"assigned","registrationState":{"assignedHub":"h.example","deviceId":"d","substatus":"x\ny"}})",
       "reply.registrationState.substatus has byte 0x0a"},
      {R"({"operationId":"a&b","status":"assigning"})", "reply.operationId has '&'"},
  };
  for (const auto& [body, says] : cases) {
    auto parsed = parse_operation_status(body);
    ASSERT_FALSE(parsed) << body;
    EXPECT_NE(parsed.error().find(says), std::string::npos) << parsed.error();
  }
}

}  // namespace
}  // namespace dpsd::core
