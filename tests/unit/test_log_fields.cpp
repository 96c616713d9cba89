// The rules of a log entry (issue 14 §4), apart from writing it: no empty fields, the caller's
// CODE_* position, MESSAGE_ID when given, and the two stderr forms (human on a terminal, the
// sd-daemon(3) "<N>" prefix otherwise, never with journald's "dpsd[pid]:" repeated).
#include <gtest/gtest.h>

#include <algorithm>

#include "core/log_format.hpp"
#include "core/message_ids.hpp"

namespace dpsd::core {
namespace {

bool has(const std::vector<std::string>& items, const std::string& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

bool has_key(const std::vector<std::string>& items, const std::string& key) {
  return std::any_of(items.begin(), items.end(),
                     [&](const std::string& i) { return i.rfind(key + "=", 0) == 0; });
}

LogRecord sample() {
  LogRecord e;
  e.level = LogLevel::Notice;
  e.message = "provisioned: hub=h";
  e.message_id = kMessageProvisioned.hex;
  e.fields = {{"DPS_OPERATION_ID", "4.abc"}, {"IOTHUB_HOSTNAME", "h"}};
  e.code_file = "daemon/app/daemon.cpp";
  e.code_line = 528;
  e.code_func = "void dpsd::app::Daemon::finish()";
  return e;
}

TEST(LogFields, JournalEntryCarriesEveryField) {
  const auto items = journal_items(sample(), "dpsd");
  EXPECT_EQ(items.front(), "MESSAGE=provisioned: hub=h");
  EXPECT_TRUE(has(items, "PRIORITY=5"));
  EXPECT_TRUE(has(items, "SYSLOG_IDENTIFIER=dpsd"));
  EXPECT_TRUE(has(items, "MESSAGE_ID=dc26f707ef6040a4a88d9524054aae69"));
  EXPECT_TRUE(has(items, "CODE_FILE=daemon/app/daemon.cpp"));
  EXPECT_TRUE(has(items, "CODE_LINE=528"));
  EXPECT_TRUE(has(items, "CODE_FUNC=void dpsd::app::Daemon::finish()"));
  EXPECT_TRUE(has(items, "DPS_OPERATION_ID=4.abc"));
  EXPECT_TRUE(has(items, "IOTHUB_HOSTNAME=h"));
}

TEST(LogFields, EmptyFieldsAreLeftOut) {
  LogRecord e = sample();
  e.fields = {{"DPS_OPERATION_ID", ""}, {"IOTHUB_HOSTNAME", "h"}};
  e.message_id = {};
  e.code_file = {};
  e.code_line = 0;
  e.code_func = {};
  const auto items = journal_items(e, "dpsd");
  for (const char* key :
       {"DPS_OPERATION_ID", "MESSAGE_ID", "CODE_FILE", "CODE_LINE", "CODE_FUNC"}) {
    EXPECT_FALSE(has_key(items, key)) << key;
  }
  EXPECT_TRUE(has(items, "IOTHUB_HOSTNAME=h"));
  for (const auto& item : items) EXPECT_NE(item.back(), '=') << item;
}

TEST(LogFields, PrefixedLineHasThePriorityAndNoIdentifier) {
  LogRecord e = sample();
  e.level = LogLevel::Error;
  e.fields = {{"DPS_OPERATION_ID", ""}, {"IOTHUB_HOSTNAME", "h"}};
  EXPECT_EQ(console_line(e, ConsoleForm::Prefixed, "dpsd", 42),
            "<3>provisioned: hub=h IOTHUB_HOSTNAME=h\n");
}

TEST(LogFields, HumanLineNamesProcessAndLevel) {
  LogRecord e = sample();
  e.level = LogLevel::Warning;
  e.fields = {};
  EXPECT_EQ(console_line(e, ConsoleForm::Human, "dpsd", 42),
            "dpsd[42]: warning: provisioned: hub=h\n");
  e.level = LogLevel::Error;
  EXPECT_EQ(console_line(e, ConsoleForm::Human, "dpsd", 42),
            "dpsd[42]: error: provisioned: hub=h\n");
}

TEST(LogFields, PriorityNamesAreLogControl1s) {
  EXPECT_EQ(parse_priority("err"), 3);
  EXPECT_EQ(parse_priority("debug"), 7);
  EXPECT_EQ(parse_priority("emerg"), 0);
  EXPECT_EQ(parse_priority("error"), -1);
  EXPECT_EQ(parse_priority(""), -1);
  for (int p = 0; p <= 7; ++p) EXPECT_EQ(parse_priority(priority_name(p)), p);
}

TEST(LogFields, MessageIdsAreDistinct128BitHex) {
  const MessageId ids[] = {kMessageProvisioned,        kMessageReprovisionedToOtherHub,
                           kMessageServedFromCache,    kMessageRefused,
                           kMessageIdentityProblem,    kMessageClockNotSet,
                           kMessageCertificateExpiring};
  for (const auto& a : ids) {
    EXPECT_EQ(a.hex.size(), 32U);
    EXPECT_TRUE(std::all_of(a.hex.begin(), a.hex.end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    }));
    int same = 0;
    for (const auto& b : ids) same += a.hex == b.hex ? 1 : 0;
    EXPECT_EQ(same, 1) << a.hex;
  }
}

}  // namespace
}  // namespace dpsd::core
