// Topic names and response-topic parsing, shared/dps-protocol.md sections 1, 3 and 7.
#include <gtest/gtest.h>

#include <string>

#include "core/topics.hpp"

namespace dpsd::core {
namespace {

TEST(MqttUsername, DpsdForm) {
  EXPECT_EQ(mqtt_username("0neFEEDC0DE", "myRegistrationId", "0.1.0"),
            "0neFEEDC0DE/registrations/myRegistrationId/api-version=2019-03-31"
            "&ClientVersion=dpsd%2F0.1.0");
}

TEST(MqttUsername, PrefixMatchesV5) {
  // V5 (embedded SDK): the part before "&ClientVersion" is the documented raw-MQTT username.
  const std::string user = mqtt_username("0neFEEDC0DE", "myRegistrationId", "1.2.3");
  EXPECT_EQ(user.substr(0, user.find('&')),
            "0neFEEDC0DE/registrations/myRegistrationId/api-version=2019-03-31");
}

TEST(MqttUsername, VersionCannotAddProperties) {
  EXPECT_EQ(mqtt_username("s", "r", "1.0&x=y"),
            "s/registrations/r/api-version=2019-03-31&ClientVersion=dpsd%2F1.0%26x%3dy");
}

TEST(Topics, RegisterAndPoll) {
  EXPECT_EQ(register_topic("1"), "$dps/registrations/PUT/iotdps-register/?$rid=1");
  EXPECT_EQ(poll_topic("2", "4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d"),
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2"
            "&operationId=4.d0a671905ea5b2c8.e7173b7b-0e54-4aa0-9d20-aeb1b89e6c7d");
}

TEST(Topics, HostileOperationIdCannotInjectPropertiesOrWildcards) {
  const std::string topic = poll_topic("1", "x&$rid=9/#+");
  EXPECT_EQ(topic,
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1"
            "&operationId=x%26%24rid%3d9%2f%23%2b");
}

TEST(Topics, FilterAndPrefix) {
  EXPECT_EQ(kResponseFilter, "$dps/registrations/res/#");
  EXPECT_EQ(kResponsePrefix, "$dps/registrations/res/");
}

TEST(ParseResponseTopic, RealServiceTrace) {
  auto t = parse_response_topic("$dps/registrations/res/202/?$rid=1&retry-after=3");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->status, 202);
  EXPECT_EQ(t->rid, "1");
  EXPECT_TRUE(t->retry_after_present);
  EXPECT_EQ(t->retry_after_s, 3);
}

TEST(ParseResponseTopic, ReorderedProperties) {
  auto t = parse_response_topic("$dps/registrations/res/202/?retry-after=120&$rid=1");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->status, 202);
  EXPECT_EQ(t->rid, "1");
  EXPECT_EQ(t->retry_after_s, 120);
}

TEST(ParseResponseTopic, RetryAfterAbsent) {
  auto t = parse_response_topic("$dps/registrations/res/200/?$rid=42");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->status, 200);
  EXPECT_EQ(t->rid, "42");
  EXPECT_FALSE(t->retry_after_present);
  EXPECT_FALSE(t->retry_after_s.has_value());
}

TEST(ParseResponseTopic, RetryAfterZeroAndLimit) {
  auto zero = parse_response_topic("$dps/registrations/res/202/?$rid=1&retry-after=0");
  ASSERT_TRUE(zero.has_value());
  EXPECT_EQ(zero->retry_after_s, 0);
  auto limit = parse_response_topic("$dps/registrations/res/429/?$rid=1&retry-after=86400");
  ASSERT_TRUE(limit.has_value());
  EXPECT_EQ(limit->retry_after_s, 86400);
  auto leading_zeros = parse_response_topic("$dps/registrations/res/202/?$rid=1&retry-after=007");
  ASSERT_TRUE(leading_zeros.has_value());
  EXPECT_EQ(leading_zeros->retry_after_s, 7);
}

// issue 11 item 4: any non-negative integer is a retry-after; a huge one saturates (the caller
// clamps it) instead of being treated as absent, which turned "wait 25 h" into "poll in 2 s".
TEST(ParseResponseTopic, HugeRetryAfterSaturatesInsteadOfVanishing) {
  for (const char* value :
       {"86401", "90000", "99999999999999999999999999999999", "9223372036854775808"}) {
    const std::string topic =
        std::string("$dps/registrations/res/429/?$rid=1&retry-after=") + value;
    auto t = parse_response_topic(topic);
    ASSERT_TRUE(t.has_value()) << topic;
    ASSERT_TRUE(t->retry_after_s.has_value()) << topic;
    EXPECT_EQ(*t->retry_after_s, 86400) << topic;
  }
}

TEST(ParseResponseTopic, RetryAfterMalformedIsPresentButEmpty) {
  for (const char* value : {"abc", "-1", "+3", "3s", " 3", "3.5", "0x10", "", "99x"}) {
    const std::string topic =
        std::string("$dps/registrations/res/202/?$rid=1&retry-after=") + value;
    auto t = parse_response_topic(topic);
    ASSERT_TRUE(t.has_value()) << topic;
    EXPECT_EQ(t->status, 202) << topic;
    EXPECT_EQ(t->rid, "1") << topic;
    EXPECT_TRUE(t->retry_after_present) << topic;
    EXPECT_FALSE(t->retry_after_s.has_value()) << topic;
  }
}

TEST(ParseResponseTopic, RetryAfterKeyIsCaseInsensitive) {
  auto t = parse_response_topic("$dps/registrations/res/202/?$rid=1&Retry-After=5");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->retry_after_s, 5);
}

TEST(ParseResponseTopic, NoPropertiesAtAll) {
  for (const char* topic : {"$dps/registrations/res/200/", "$dps/registrations/res/200/?"}) {
    auto t = parse_response_topic(topic);
    ASSERT_TRUE(t.has_value()) << topic;
    EXPECT_EQ(t->status, 200);
    EXPECT_EQ(t->rid, "");
    EXPECT_FALSE(t->retry_after_present);
  }
}

TEST(ParseResponseTopic, UnknownAndGarbagePropertiesAreIgnored) {
  auto t = parse_response_topic(
      "$dps/registrations/res/202/?&&junk&x=1&$rid=7&=&retry-after=2&foo=bar=baz&");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->rid, "7");
  EXPECT_EQ(t->retry_after_s, 2);
}

TEST(ParseResponseTopic, DuplicateProperties) {
  auto same =
      parse_response_topic("$dps/registrations/res/202/?$rid=1&retry-after=3&$rid=1&retry-after=3");
  ASSERT_TRUE(same.has_value());
  EXPECT_EQ(same->rid, "1");
  EXPECT_EQ(same->retry_after_s, 3);

  // Conflicting values: neither is trusted.
  auto conflict =
      parse_response_topic("$dps/registrations/res/202/?$rid=1&retry-after=3&$rid=2&retry-after=4");
  ASSERT_TRUE(conflict.has_value());
  EXPECT_EQ(conflict->rid, "");
  EXPECT_TRUE(conflict->retry_after_present);
  EXPECT_FALSE(conflict->retry_after_s.has_value());
}

TEST(ParseResponseTopic, ErrorStatuses) {
  auto t = parse_response_topic("$dps/registrations/res/401/?$rid=3");
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->status, 401);
  auto busy = parse_response_topic("$dps/registrations/res/429/?$rid=3&retry-after=10");
  ASSERT_TRUE(busy.has_value());
  EXPECT_EQ(busy->status, 429);
  EXPECT_EQ(busy->retry_after_s, 10);
}

TEST(ParseResponseTopic, RejectsOtherTopics) {
  for (const char* topic : {
           "",
           "$dps/registrations/res/",
           "$dps/registrations/res",
           "$dps/registrations/PUT/iotdps-register/?$rid=1",
           "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=x",
           "$DPS/registrations/res/200/?$rid=1",
           "dps/registrations/res/200/?$rid=1",
           "x$dps/registrations/res/200/?$rid=1",
           "$iothub/twin/res/200/?$rid=1",
           "$dps/registrations/res/20/?$rid=1",
           "$dps/registrations/res/2000/?$rid=1",
           "$dps/registrations/res/2a0/?$rid=1",
           "$dps/registrations/res/-20/?$rid=1",
           "$dps/registrations/res/ 200/?$rid=1",
           "$dps/registrations/res/200",
           "$dps/registrations/res/200?$rid=1",
           "$dps/registrations/res/200/x?$rid=1",
           "$dps/registrations/res/200/$rid=1",
           "$dps/registrations/res/200//?$rid=1",
       }) {
    EXPECT_FALSE(parse_response_topic(topic).has_value()) << topic;
  }
}

}  // namespace
}  // namespace dpsd::core
