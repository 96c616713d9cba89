// The registration state machine, branch by branch, with no I/O: events in, actions out.
#include <gtest/gtest.h>

#include "core/provisioner.hpp"

namespace dpsd::core {
namespace {

using std::chrono::milliseconds;

RegistrationRequest make_request() {
  RegistrationRequest request;
  request.id_scope = "0ne00000000";
  request.registration_id = "dev-1";
  request.client_version = "1.2.3";
  request.connect_timeout = milliseconds(5000);
  request.response_timeout = milliseconds(7000);
  return request;
}

template <typename T>
std::vector<T> all_of(const Actions& actions) {
  std::vector<T> found;
  for (const auto& action : actions) {
    if (const auto* a = std::get_if<T>(&action)) found.push_back(*a);
  }
  return found;
}

template <typename T>
T only(const Actions& actions) {
  auto found = all_of<T>(actions);
  EXPECT_EQ(found.size(), 1U) << "expected exactly one action of the type";
  return found.empty() ? T{} : found.front();
}

const char* kAssigning = R"({"operationId":"4.abc.uuid","status":"assigning"})";
const char* kAssigned =
    R"({"operationId":"4.abc.uuid","status":"assigned","registrationState":{"registrationId":"dev-1",)"
    R"("assignedHub":"hub.example","deviceId":"dev-1","status":"assigned","substatus":"initialAssignment"}})";

// Drives a registration to the point where the register request is out; returns its $rid.
std::string connect_and_register(Registration& registration) {
  registration.start();
  registration.handle(Connected{});
  auto actions = registration.handle(SubscribeAcked{1});
  return only<Publish>(actions).topic.substr(
      std::string("$dps/registrations/PUT/iotdps-register/?$rid=").size());
}

StartTimer timer_of(const Actions& actions, TimerId id) {
  for (const auto& timer : all_of<StartTimer>(actions)) {
    if (timer.id == id) return timer;
  }
  ADD_FAILURE() << "no StartTimer for that timer";
  return {};
}

TEST(Provisioner, StartOpensConnectionWithRegistrationIdentity) {
  Registration registration(make_request());
  auto actions = registration.start();
  auto open = only<OpenConnection>(actions);
  EXPECT_EQ(open.client_id, "dev-1");
  EXPECT_EQ(open.username,
            "0ne00000000/registrations/dev-1/api-version=2019-03-31&ClientVersion=dpsd%2F1.2.3");
  EXPECT_EQ(timer_of(actions, TimerId::Response).delay, milliseconds(5000));
  // The whole attempt is bounded too (default 10 min).
  EXPECT_EQ(timer_of(actions, TimerId::Attempt).delay, milliseconds(600000));
}

// issue 11 item 1: every official client publishes the register only after the SUBACK.
TEST(Provisioner, RegistersOnlyAfterTheSuback) {
  Registration registration(make_request());
  registration.start();
  auto actions = registration.handle(Connected{});
  auto subscribe = only<Subscribe>(actions);
  EXPECT_EQ(subscribe.topic, "$dps/registrations/res/#");
  EXPECT_EQ(subscribe.qos, 1);
  EXPECT_TRUE(all_of<Publish>(actions).empty()) << "register sent before the SUBACK";
  // The SUBACK wait is bounded by the response timeout.
  EXPECT_EQ(only<StartTimer>(actions).delay, milliseconds(7000));

  actions = registration.handle(SubscribeAcked{1});
  auto publish = only<Publish>(actions);
  EXPECT_EQ(publish.topic, "$dps/registrations/PUT/iotdps-register/?$rid=1");
  EXPECT_EQ(publish.payload, R"({"registrationId":"dev-1"})");
  EXPECT_FALSE(publish.poll);
  EXPECT_EQ(only<StartTimer>(actions).delay, milliseconds(7000));
}

TEST(Provisioner, RefusedSubscriptionEndsTheAttemptAsTransient) {
  Registration registration(make_request());
  registration.start();
  registration.handle(Connected{});
  auto actions = registration.handle(SubscribeAcked{kSubackFailure});
  EXPECT_TRUE(all_of<Publish>(actions).empty());
  auto finished = only<Finished>(actions);
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
  EXPECT_EQ(finished.outcome.error, "DPS refused the subscription to $dps/registrations/res/#");
}

TEST(Provisioner, NoSubackTimesOut) {
  Registration registration(make_request());
  registration.start();
  registration.handle(Connected{});
  auto finished = only<Finished>(registration.handle(TimerFired{TimerId::Response}));
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
  EXPECT_EQ(finished.outcome.error, "no SUBACK from DPS within 7 s");
}

TEST(Provisioner, CustomPayloadTravelsInRegisterBody) {
  auto request = make_request();
  request.payload_json = R"({"site":"north"})";
  Registration registration(request);
  registration.start();
  registration.handle(Connected{});
  auto publish = only<Publish>(registration.handle(SubscribeAcked{0}));
  EXPECT_EQ(publish.payload, R"({"registrationId":"dev-1","payload":{"site":"north"}})");
}

TEST(Provisioner, ImmediateAssignment) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto actions =
      registration.handle(MessageReceived{"$dps/registrations/res/200/?$rid=" + rid, kAssigned});
  auto finished = only<Finished>(actions);
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Assigned);
  ASSERT_TRUE(finished.outcome.registration_state);
  EXPECT_EQ(finished.outcome.registration_state->assigned_hub, "hub.example");
  EXPECT_EQ(finished.outcome.registration_state->device_id, "dev-1");
  EXPECT_EQ(all_of<CloseConnection>(actions).size(), 1U);
  EXPECT_TRUE(registration.finished());
  // Nothing happens after the end.
  EXPECT_TRUE(registration.handle(TimerFired{TimerId::Response}).empty());
}

TEST(Provisioner, AssigningThenPollThenAssigned) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto actions = registration.handle(
      MessageReceived{"$dps/registrations/res/202/?$rid=" + rid + "&retry-after=3", kAssigning});
  auto timer = only<StartTimer>(actions);
  EXPECT_EQ(timer.id, TimerId::Poll);
  EXPECT_EQ(timer.delay, milliseconds(3000));
  EXPECT_TRUE(all_of<Publish>(actions).empty());

  actions = registration.handle(TimerFired{TimerId::Poll});
  auto poll = only<Publish>(actions);
  EXPECT_EQ(poll.topic,
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=4.abc.uuid");
  EXPECT_EQ(registration.operation_id(), "4.abc.uuid");

  actions = registration.handle(MessageReceived{"$dps/registrations/res/200/?$rid=2", kAssigned});
  EXPECT_EQ(only<Finished>(actions).outcome.kind, OutcomeKind::Assigned);
}

TEST(Provisioner, RetryAfterIsClampedAndDefaulted) {
  EXPECT_EQ(poll_interval(std::nullopt), kDefaultPollInterval);
  EXPECT_EQ(poll_interval(milliseconds(0)), kMinPollInterval);
  EXPECT_EQ(poll_interval(milliseconds(2000)), milliseconds(2000));
  EXPECT_EQ(poll_interval(milliseconds(86400000)), kMaxPollInterval);

  for (const char* suffix : {"", "&retry-after=abc", "&retry-after=0", "&retry-after=99999"}) {
    Registration registration(make_request());
    const auto rid = connect_and_register(registration);
    auto actions = registration.handle(
        MessageReceived{"$dps/registrations/res/202/?$rid=" + rid + suffix, kAssigning});
    auto timer = only<StartTimer>(actions);
    EXPECT_GE(timer.delay, kMinPollInterval) << suffix;
    EXPECT_LE(timer.delay, kMaxPollInterval) << suffix;
  }
}

TEST(Provisioner, ReorderedTopicPropertiesAreAccepted) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto actions = registration.handle(
      MessageReceived{"$dps/registrations/res/202/?retry-after=2&$rid=" + rid, kAssigning});
  EXPECT_EQ(only<StartTimer>(actions).delay, milliseconds(2000));
}

TEST(Provisioner, ThrottledRequestIsResentAfterRetryAfter) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto actions = registration.handle(
      MessageReceived{"$dps/registrations/res/429/?$rid=" + rid + "&retry-after=4",
                      R"({"errorCode":429001,"message":"Throttled"})"});
  auto timer = only<StartTimer>(actions);
  EXPECT_EQ(timer.id, TimerId::Retry);
  EXPECT_EQ(timer.delay, milliseconds(4000));
  EXPECT_TRUE(all_of<Finished>(actions).empty());
  actions = registration.handle(TimerFired{TimerId::Retry});
  // Still no operation: the register is sent again, under a new $rid.
  EXPECT_EQ(only<Publish>(actions).topic, "$dps/registrations/PUT/iotdps-register/?$rid=2");
}

TEST(Provisioner, ServerErrorDuringPollResendsThePoll) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  registration.handle(MessageReceived{"$dps/registrations/res/202/?$rid=" + rid, kAssigning});
  registration.handle(TimerFired{TimerId::Poll});
  auto actions = registration.handle(
      MessageReceived{"$dps/registrations/res/500/?$rid=2&retry-after=2", "{}"});
  EXPECT_EQ(only<StartTimer>(actions).id, TimerId::Retry);
  actions = registration.handle(TimerFired{TimerId::Retry});
  EXPECT_EQ(only<Publish>(actions).topic,
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=3&operationId=4.abc.uuid");
}

// Without a retry-after the caller's jittered backoff decides (a fixed guess here would bring a
// fleet back in lockstep), and the operation is left for the next attempt to resume.
TEST(Provisioner, ServerErrorWithoutRetryAfterEndsTheAttemptKeepingTheOperation) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  registration.handle(MessageReceived{"$dps/registrations/res/202/?$rid=" + rid, kAssigning});
  registration.handle(TimerFired{TimerId::Poll});
  auto finished = only<Finished>(
      registration.handle(MessageReceived{"$dps/registrations/res/503/?$rid=2", "{}"}));
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
  EXPECT_EQ(finished.outcome.operation_id, "4.abc.uuid");
}

TEST(Provisioner, PersistentThrottlingEndsTheAttemptWithTheHint) {
  Registration registration(make_request());
  connect_and_register(registration);
  Actions actions;
  for (int i = 0; i <= kMaxInConnectionRetries; ++i) {
    actions = registration.handle(MessageReceived{
        "$dps/registrations/res/503/?$rid=" + std::to_string(i + 1) + "&retry-after=1", ""});
    if (!all_of<Finished>(actions).empty()) break;
    registration.handle(TimerFired{TimerId::Retry});
  }
  auto finished = only<Finished>(actions);
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
  ASSERT_TRUE(finished.outcome.retry_after);
  EXPECT_EQ(*finished.outcome.retry_after, milliseconds(1000));
  EXPECT_NE(finished.outcome.error.find("503"), std::string::npos) << finished.outcome.error;
}

TEST(Provisioner, LongRetryAfterEndsTheAttemptAtOnce) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto actions = registration.handle(
      MessageReceived{"$dps/registrations/res/429/?$rid=" + rid + "&retry-after=120", ""});
  auto finished = only<Finished>(actions);
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
  EXPECT_EQ(finished.outcome.retry_after, milliseconds(120000));
}

TEST(Provisioner, UnauthorizedIsARefusalCarryingTheErrorCode) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto actions = registration.handle(
      MessageReceived{"$dps/registrations/res/401/?$rid=" + rid,
                      R"({"errorCode":401002,"trackingId":"t","message":"Invalid certificate."})"});
  auto finished = only<Finished>(actions);
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Refused);
  EXPECT_EQ(finished.outcome.dps_error_code, 401002);
  EXPECT_EQ(finished.outcome.error,
            "DPS refused the registration: 401 Unauthorized (errorCode 401002: Invalid "
            "certificate.)");
}

TEST(Provisioner, NotFoundWithUnparseableBodyIsStillARefusal) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto finished = only<Finished>(
      registration.handle(MessageReceived{"$dps/registrations/res/404/?$rid=" + rid, "<html>"}));
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Refused);
  EXPECT_EQ(finished.outcome.error, "DPS refused the registration: 404 Not Found");
}

TEST(Provisioner, FailedAssignmentCarriesRegistrationStateError) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto finished = only<Finished>(registration.handle(MessageReceived{
      "$dps/registrations/res/200/?$rid=" + rid,
      R"({"operationId":"op","status":"failed","registrationState":{"registrationId":"dev-1","status":"failed",)"
      R"("errorCode":400207,"errorMessage":"Custom allocation failed with status code: 400"}})"}));
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Refused);
  EXPECT_EQ(finished.outcome.dps_error_code, 400207);
  EXPECT_EQ(finished.outcome.error,
            "DPS: registration failed (errorCode 400207: Custom allocation failed with status "
            "code: 400)");
}

TEST(Provisioner, DisabledEnrollmentIsARefusal) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto finished = only<Finished>(registration.handle(MessageReceived{
      "$dps/registrations/res/200/?$rid=" + rid,
      R"({"operationId":"","status":"disabled","registrationState":{"registrationId":"dev-1","status":"disabled"}})"}));
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Refused);
  EXPECT_EQ(finished.outcome.error, "DPS: the enrollment is disabled");
}

TEST(Provisioner, ReplyWithUnknownRidIsIgnored) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto actions =
      registration.handle(MessageReceived{"$dps/registrations/res/200/?$rid=999", kAssigned});
  EXPECT_TRUE(all_of<Finished>(actions).empty());
  EXPECT_EQ(all_of<Log>(actions).size(), 1U);
  // The right one still completes it.
  actions =
      registration.handle(MessageReceived{"$dps/registrations/res/200/?$rid=" + rid, kAssigned});
  EXPECT_EQ(only<Finished>(actions).outcome.kind, OutcomeKind::Assigned);
}

TEST(Provisioner, DuplicateReplyAfterPollScheduledIsIgnored) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  const std::string topic = "$dps/registrations/res/202/?$rid=" + rid + "&retry-after=1";
  registration.handle(MessageReceived{topic, kAssigning});
  auto actions = registration.handle(MessageReceived{topic, kAssigning});
  EXPECT_TRUE(all_of<StartTimer>(actions).empty());
  EXPECT_TRUE(all_of<Finished>(actions).empty());
}

TEST(Provisioner, MessageOnUnrelatedTopicIsIgnored) {
  Registration registration(make_request());
  connect_and_register(registration);
  for (const char* topic :
       {"devices/x/messages", "$dps/registrations/res/", "$dps/registrations/res/abc/?$rid=1"}) {
    auto actions = registration.handle(MessageReceived{topic, kAssigned});
    EXPECT_TRUE(all_of<Finished>(actions).empty()) << topic;
  }
}

TEST(Provisioner, MalformedReplyEndsAttemptAsTransient) {
  for (const char* body :
       {R"({"operationId":)", "123", "[]", R"({"status":5})",
        R"({"operationId":"x","status":"assigned","registrationState":"nope"})",
        R"({"operationId":"x","status":"assigned","registrationState":{"assignedHub":"h"}})"}) {
    Registration registration(make_request());
    const auto rid = connect_and_register(registration);
    auto actions =
        registration.handle(MessageReceived{"$dps/registrations/res/200/?$rid=" + rid, body});
    auto finished = only<Finished>(actions);
    EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient) << body;
    EXPECT_NE(finished.outcome.error.find("malformed"), std::string::npos)
        << finished.outcome.error;
  }
}

TEST(Provisioner, AssigningWithoutOperationIdIsMalformed) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto finished = only<Finished>(registration.handle(
      MessageReceived{"$dps/registrations/res/202/?$rid=" + rid, R"({"status":"assigning"})"}));
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
}

TEST(Provisioner, UnassignedKeepsPolling) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto actions = registration.handle(MessageReceived{
      "$dps/registrations/res/202/?$rid=" + rid, R"({"operationId":"o","status":"unassigned"})"});
  EXPECT_EQ(only<StartTimer>(actions).id, TimerId::Poll);
}

TEST(Provisioner, UnknownStatusIsTransient) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto finished = only<Finished>(registration.handle(MessageReceived{
      "$dps/registrations/res/200/?$rid=" + rid, R"({"operationId":"o","status":"blacklisted"})"}));
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
  EXPECT_NE(finished.outcome.error.find("blacklisted"), std::string::npos);
}

TEST(Provisioner, EndlessAssigningIsBounded) {
  Registration registration(make_request());
  connect_and_register(registration);
  Actions actions;
  for (int i = 1; i <= kMaxPolls + 2; ++i) {
    actions = registration.handle(MessageReceived{
        "$dps/registrations/res/202/?$rid=" + std::to_string(i) + "&retry-after=1", kAssigning});
    if (!all_of<Finished>(actions).empty()) break;
    registration.handle(TimerFired{TimerId::Poll});
  }
  auto finished = only<Finished>(actions);
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
}

TEST(Provisioner, NoReplyTimesOut) {
  Registration registration(make_request());
  connect_and_register(registration);
  auto finished = only<Finished>(registration.handle(TimerFired{TimerId::Response}));
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
  EXPECT_EQ(finished.outcome.error, "no reply from DPS within 7 s");
}

TEST(Provisioner, NoConnackTimesOut) {
  Registration registration(make_request());
  registration.start();
  auto finished = only<Finished>(registration.handle(TimerFired{TimerId::Response}));
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
  EXPECT_EQ(finished.outcome.error, "no MQTT CONNACK from DPS within 5 s");
}

TEST(Provisioner, ConnectRefusedNotAuthorizedIsARefusal) {
  Registration registration(make_request());
  registration.start();
  auto finished = only<Finished>(registration.handle(ConnectRefused{5}));
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Refused);
  EXPECT_EQ(finished.outcome.error, "MQTT CONNECT refused: not authorized (rc 5)");
  Registration other(make_request());
  other.start();
  EXPECT_EQ(only<Finished>(other.handle(ConnectRefused{3})).outcome.kind, OutcomeKind::Transient);
}

TEST(Provisioner, ConnectionLostMidPollIsTransientWithTheReason) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  registration.handle(MessageReceived{"$dps/registrations/res/202/?$rid=" + rid, kAssigning});
  registration.handle(TimerFired{TimerId::Poll});
  auto actions = registration.handle(ConnectionLost{"connection closed by server"});
  auto finished = only<Finished>(actions);
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
  EXPECT_EQ(finished.outcome.error, "connection closed by server");
  EXPECT_EQ(finished.outcome.operation_id, "4.abc.uuid");
  // All timers are cancelled when an attempt ends.
  EXPECT_EQ(all_of<CancelTimer>(actions).size(), 4U);
}

TEST(Provisioner, StaleTimersAreIgnored) {
  Registration registration(make_request());
  connect_and_register(registration);
  EXPECT_TRUE(registration.handle(TimerFired{TimerId::Poll}).empty());
  EXPECT_TRUE(registration.handle(TimerFired{TimerId::Retry}).empty());
}

// ---- issue 11 item 2: one operation across reconnects ---------------------------------------

TEST(Provisioner, ResumedOperationIsPolledNotRegisteredAgain) {
  auto request = make_request();
  request.resume_operation_id = "4.abc.uuid";
  Registration registration(request);
  registration.start();
  registration.handle(Connected{});
  auto actions = registration.handle(SubscribeAcked{1});
  EXPECT_TRUE(all_of<Publish>(actions).empty());
  // Through the poll timer, so the caller's poll pacing applies to the first poll too.
  auto timer = only<StartTimer>(actions);
  EXPECT_EQ(timer.id, TimerId::Poll);
  actions = registration.handle(TimerFired{TimerId::Poll});
  auto poll = only<Publish>(actions);
  EXPECT_TRUE(poll.poll);
  EXPECT_EQ(poll.topic,
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=4.abc.uuid");
  actions = registration.handle(MessageReceived{"$dps/registrations/res/200/?$rid=1", kAssigned});
  EXPECT_EQ(only<Finished>(actions).outcome.kind, OutcomeKind::Assigned);
}

TEST(Provisioner, UnknownResumedOperationRegistersAfreshOnce) {
  auto request = make_request();
  request.resume_operation_id = "4.gone.uuid";
  Registration registration(request);
  registration.start();
  registration.handle(Connected{});
  registration.handle(SubscribeAcked{1});
  registration.handle(TimerFired{TimerId::Poll});
  auto actions = registration.handle(MessageReceived{
      "$dps/registrations/res/404/?$rid=1", R"({"errorCode":404201,"message":"not found"})"});
  EXPECT_TRUE(all_of<Finished>(actions).empty());
  auto publish = only<Publish>(actions);
  EXPECT_EQ(publish.topic, "$dps/registrations/PUT/iotdps-register/?$rid=2");
  EXPECT_FALSE(publish.poll);
  // A 4xx on the register itself is DPS's verdict on the registration.
  actions = registration.handle(MessageReceived{"$dps/registrations/res/401/?$rid=2", "{}"});
  auto finished = only<Finished>(actions);
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Refused);
  EXPECT_TRUE(finished.outcome.operation_id.empty());
}

TEST(Provisioner, TransientEndAfterAcceptanceLeavesTheOperationForTheNextAttempt) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  registration.handle(MessageReceived{"$dps/registrations/res/202/?$rid=" + rid, kAssigning});
  auto finished = only<Finished>(registration.handle(TimerFired{TimerId::Attempt}));
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
  EXPECT_EQ(finished.outcome.operation_id, "4.abc.uuid");
  EXPECT_NE(finished.outcome.error.find("the limit of one attempt"), std::string::npos)
      << finished.outcome.error;
}

// ---- issue 11 item 3: 409 and 412 are transient ----------------------------------------------

TEST(Provisioner, ConflictIsRetriedAfterRetryAfter) {
  for (const int status : {409, 412}) {
    Registration registration(make_request());
    const auto rid = connect_and_register(registration);
    auto actions = registration.handle(MessageReceived{
        "$dps/registrations/res/" + std::to_string(status) + "/?$rid=" + rid + "&retry-after=3",
        R"({"errorCode":409203,"message":"Precondition failed."})"});
    EXPECT_TRUE(all_of<Finished>(actions).empty()) << status;
    EXPECT_EQ(only<StartTimer>(actions).id, TimerId::Retry);
    EXPECT_EQ(only<StartTimer>(actions).delay, milliseconds(3000));
    EXPECT_NE(only<Log>(actions).message.find("DPS: registration conflict (409203)"),
              std::string::npos);
    // The supervisor is told, so State and LastError show the wait.
    EXPECT_EQ(only<Retrying>(actions).reason, "DPS: registration conflict (409203)");
  }
}

TEST(Provisioner, ConflictWithoutRetryAfterLeavesTheDelayToTheJitteredBackoff) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto finished = only<Finished>(registration.handle(
      MessageReceived{"$dps/registrations/res/409/?$rid=" + rid,
                      R"({"errorCode":409203,"message":"Precondition failed."})"}));
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
  EXPECT_EQ(finished.outcome.error, "DPS: registration conflict (409203)");
  EXPECT_EQ(finished.outcome.dps_error_code, 409203);
  EXPECT_FALSE(finished.outcome.retry_after.has_value());
}

// ---- issue 11 item 4: retry-after is bounded, never ignored --------------------------------

TEST(Provisioner, RetryDelayIsClampedToOneSecondAndRetryMax) {
  const milliseconds max(3000);
  EXPECT_FALSE(retry_delay(std::nullopt, max).has_value());
  EXPECT_EQ(retry_delay(milliseconds(0), max), milliseconds(1000));
  EXPECT_EQ(retry_delay(milliseconds(2000), max), milliseconds(2000));
  EXPECT_EQ(retry_delay(milliseconds(90000000), max), milliseconds(3000));
}

TEST(Provisioner, HugeThrottleRetryAfterWaitsRetryMaxNotTheDefault) {
  auto request = make_request();
  request.retry_max = milliseconds(3000);
  Registration registration(request);
  const auto rid = connect_and_register(registration);
  auto actions = registration.handle(
      MessageReceived{"$dps/registrations/res/429/?$rid=" + rid + "&retry-after=90000", "{}"});
  EXPECT_EQ(only<StartTimer>(actions).id, TimerId::Retry);
  EXPECT_EQ(only<StartTimer>(actions).delay, milliseconds(3000));
}

TEST(Provisioner, HugePollRetryAfterWaitsFiveMinutes) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  auto actions = registration.handle(MessageReceived{
      "$dps/registrations/res/202/?$rid=" + rid + "&retry-after=90000", kAssigning});
  EXPECT_EQ(only<StartTimer>(actions).delay, kMaxPollInterval);
  EXPECT_NE(only<Log>(actions).message.find("polling in 300 s"), std::string::npos);
}

// ---- issue 10 items 2 and 14: hostile replies ------------------------------------------------

TEST(Provisioner, StrayRepliesAreLoggedByLengthAndAFloodEndsTheAttempt) {
  Registration registration(make_request());
  connect_and_register(registration);
  const std::string long_rid(60000, '7');
  Actions actions;
  for (int i = 0; i < kMaxStrayMessages; ++i) {
    actions = registration.handle(
        MessageReceived{"$dps/registrations/res/200/?$rid=" + long_rid, kAssigned});
    ASSERT_TRUE(all_of<Finished>(actions).empty()) << i;
    auto log = only<Log>(actions);
    EXPECT_EQ(log.level, LogLevel::Debug);
    EXPECT_LT(log.message.size(), 200U) << "the reply's content reached the log";
  }
  actions =
      registration.handle(MessageReceived{"$dps/registrations/res/200/?$rid=" + long_rid, "{}"});
  auto finished = only<Finished>(actions);
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
  EXPECT_NE(finished.outcome.error.find("answer no request"), std::string::npos);
}

TEST(Provisioner, HostileAssignmentValuesAreMalformedNotStored) {
  const std::string hubs[] = {"evil$(id)x.example",  "hub\nWATCHDOG=trigger",
                              std::string(300, 'a'), std::string(64, 'a') + ".example",
                              "-hub.example",        "hub..example"};
  for (const auto& hub : hubs) {
    const std::string body =
        R"({"operationId":"4.abc.uuid","status":"assigned","registrationState":{"assignedHub":)" +
        std::string("\"") + (hub.find('\n') != std::string::npos ? "hub\\nWATCHDOG=trigger" : hub) +
        R"(","deviceId":"dev-1"}})";
    Registration registration(make_request());
    const auto rid = connect_and_register(registration);
    auto finished = only<Finished>(
        registration.handle(MessageReceived{"$dps/registrations/res/200/?$rid=" + rid, body}));
    EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient) << hub;
    EXPECT_FALSE(finished.outcome.registration_state.has_value()) << hub;
    EXPECT_NE(finished.outcome.error.find("reply.registrationState.assignedHub"), std::string::npos)
        << finished.outcome.error;
  }
}

TEST(Provisioner, HostileOperationIdIsMalformed) {
  Registration registration(make_request());
  const auto rid = connect_and_register(registration);
  const std::string body =
      R"({"operationId":")" + std::string(10000, 'a') + R"(","status":"assigning"})";
  auto finished = only<Finished>(
      registration.handle(MessageReceived{"$dps/registrations/res/202/?$rid=" + rid, body}));
  EXPECT_EQ(finished.outcome.kind, OutcomeKind::Transient);
  EXPECT_NE(finished.outcome.error.find("reply.operationId is 10000 characters"), std::string::npos)
      << finished.outcome.error;
  EXPECT_TRUE(finished.outcome.operation_id.empty());
}

}  // namespace
}  // namespace dpsd::core
