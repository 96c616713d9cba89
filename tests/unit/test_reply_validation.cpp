// The syntax rules for strings DPS sends back (issue 10 item 2).
#include <gtest/gtest.h>

#include "core/reply_validation.hpp"

namespace dpsd::core {
namespace {

TEST(ReplyValidation, HostNamesFollowRfc1123) {
  for (const char* ok : {"contoso.azure-devices.net", "hub-a.emulator.test", "localhost", "a",
                         "x1.y2", "HUB.Example.NET"}) {
    EXPECT_TRUE(validate_host_name(ok)) << ok;
  }
  EXPECT_TRUE(validate_host_name(std::string(63, 'a') + ".net"));
  // 4 labels of 63 = 252 characters with the dots, then one more label char is 254.
  const std::string label(63, 'a');
  const std::string longest = label + "." + label + "." + label + "." + std::string(61, 'a');
  ASSERT_EQ(longest.size(), 253U);
  EXPECT_TRUE(validate_host_name(longest));
  EXPECT_FALSE(validate_host_name(longest + "a"));

  const struct {
    std::string name;
    const char* says;
  } bad[] = {
      {"", "is empty"},
      {"evil$(id)x.example", "label 1 has '$'"},
      {"hub\nWATCHDOG=trigger", "label 1 has byte 0x0a"},
      {std::string(64, 'a') + ".net", "label 1 is 64 characters, at most 63"},
      {"-hub.net", "starts or ends with '-'"},
      {"hub-.net", "starts or ends with '-'"},
      {"hub..net", "label 2 is empty"},
      {"hub.net.", "label 3 is empty"},
      {"hub net", "label 1 has byte 0x20"},
      {"hub_a.net", "label 1 has '_'"},
      {std::string(200000, 'a'), "is 200000 characters, at most 253"},
  };
  for (const auto& [name, says] : bad) {
    const Status status = validate_host_name(name);
    ASSERT_FALSE(status) << name;
    EXPECT_NE(status.error().find(says), std::string::npos) << status.error();
    EXPECT_LT(status.error().size(), 120U) << "the error must not repeat the value";
  }
}

// IoT Hub identity registry rules for deviceId.
TEST(ReplyValidation, DeviceIdsFollowIotHubRules) {
  for (const char* ok : {"dev-1", "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6",
                         "a:b.c+d%e_f#g*h?i!j(k)l,m=n@o;p$q'r", "$(id)"}) {
    EXPECT_TRUE(validate_device_id(ok)) << ok;
  }
  EXPECT_TRUE(validate_device_id(std::string(128, 'd')));
  EXPECT_FALSE(validate_device_id(std::string(129, 'd')));
  EXPECT_FALSE(validate_device_id(""));
  for (const char* bad : {"dev 1", "dev\n1", "dev/1", "dev\"1", "dev`id`", "dev|x", "dev&x",
                          "dev<x", "dev\\x", "dév"}) {
    EXPECT_FALSE(validate_device_id(bad)) << bad;
  }
}

TEST(ReplyValidation, OperationIdsAreUrlSafeAndBounded) {
  EXPECT_TRUE(validate_operation_id("5.71cf7e385566aa10.4469ed4c-dc19-4af8-8b36-9ef6396ac1b3"));
  EXPECT_TRUE(validate_operation_id(""));  // "disabled" answers carry an empty one
  EXPECT_FALSE(validate_operation_id(std::string(257, 'a')));
  for (const char* bad : {"a&b=c", "a#b", "a+b", "a/b", "a b", "a\nb"}) {
    EXPECT_FALSE(validate_operation_id(bad)) << bad;
  }
}

TEST(ReplyValidation, SubstatusIsAnIdentifier) {
  for (const char* ok : {"", "initialAssignment", "deviceDataMigrated", "deviceDataReset",
                         "reprovisionedToInitialAssignment"}) {
    EXPECT_TRUE(validate_substatus(ok)) << ok;
  }
  EXPECT_FALSE(validate_substatus("initial Assignment"));
  EXPECT_FALSE(validate_substatus(std::string(65, 'a')));
}

TEST(ReplyValidation, RidIsShortAndPlain) {
  EXPECT_TRUE(validate_rid("1"));
  EXPECT_TRUE(validate_rid("65535"));
  EXPECT_FALSE(validate_rid(std::string(33, '1')));
  EXPECT_FALSE(validate_rid("1&x"));
}

}  // namespace
}  // namespace dpsd::core
