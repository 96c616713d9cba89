// app::BusService in process: exported on a private system-style dbus-daemon, backed by a fake
// ProvisioningControl (the daemon's side is not under test here), driven by the test's own
// sd-event loop, and called by a raw sd-bus client on the same loop (bus_client.hpp). Callers of
// another uid run in a forked child, since the test runs as root and root is always privileged.
// The bus has no project policy (include_project_policy=false), so every call reaches the
// service and its own check of the caller is what is tested.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "app/bus_service.hpp"
#include "bus_client.hpp"
#include "core/text_sanitize.hpp"
#include "io/event_loop.hpp"
#include "support/loop_run.hpp"
#include "support/private_bus.hpp"

namespace dpsd::test {
namespace {

constexpr const char* kAccessDenied = "org.freedesktop.DBus.Error.AccessDenied";
constexpr const char* kNotProvisioned = "io.dpsd.Provisioning1.Error.NotProvisioned";

// The daemon's side, as BusService sees it: a model the test sets, and a record of the calls.
class FakeControl final : public app::ProvisioningControl {
 public:
  const app::StatusModel& status() const override { return model; }
  std::uint64_t reprovision() override {
    ++reprovision_calls;
    return start_usec;
  }
  std::optional<app::ConnectionInfo> connection_info() const override {
    ++info_calls;
    return info;
  }

  app::StatusModel model;
  std::uint64_t start_usec = 0;  // what reprovision() answers: the daemon's choice of start
  int reprovision_calls = 0;
  std::optional<app::ConnectionInfo> info;
  mutable int info_calls = 0;
};

app::StatusModel provisioned_model() {
  app::StatusModel m;
  m.state = app::ProvisioningState::Provisioned;
  core::Assignment a;
  a.assigned_hub = "hub-a.example.test";
  a.device_id = "device-7";
  a.substatus = "initialAssignment";
  m.assignment = a;
  m.registration_id = "gateway-7";
  m.id_scope = "0ne00000042";
  m.source = "dps";
  m.last_error = "";
  m.attempts = 3;
  m.last_attempt_usec = 1'700'000'000'000'001;
  m.next_attempt_usec = 1'700'000'000'000'002;
  m.provisioned_usec = 1'700'000'000'000'003;
  m.certificate_not_after_usec = 1'900'000'000'000'004;
  return m;
}

class BusService : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { dpsd_gid_ = ensure_dpsd_group(); }

  void SetUp() override {
    // The plain socket address, which stays valid when the bus restarts (a new guid).
    ASSERT_EQ(::setenv("DBUS_SYSTEM_BUS_ADDRESS", bus_.plain_address().c_str(), 1), 0);
    export_service();
    client_ = std::make_unique<BusClient>(bus_.plain_address(), loop_.get());
  }

  void export_service() {
    auto created = app::BusService::create(loop_.get(), control_);
    ASSERT_TRUE(created) << created.error();
    service_ = std::move(created.value());
  }

  // Runs the loop until the client saw `n` PropertiesChanged signals.
  void expect_signals(std::size_t n) {
    ASSERT_TRUE(run_loop_until(
        loop_.get(), [&] { return client_->changes().size() >= n; }, 10s))
        << "PropertiesChanged number " << n << " did not arrive within 10 s";
  }

  static gid_t dpsd_gid_;
  PrivateBus bus_{/*include_project_policy=*/false};
  io::EventLoop loop_;
  FakeControl control_;
  std::unique_ptr<app::BusService> service_;
  std::unique_ptr<BusClient> client_;
};

gid_t BusService::dpsd_gid_ = 0;

Value s(const char* text) {
  return std::string(text);
}

TEST_F(BusService, EveryPropertyMirrorsTheModel) {
  control_.model = provisioned_model();
  const Values expected{
      {"State", s("provisioned")},
      {"AssignedHub", s("hub-a.example.test")},
      {"DeviceId", s("device-7")},
      {"RegistrationId", s("gateway-7")},
      {"IdScope", s("0ne00000042")},
      {"Substatus", s("initialAssignment")},
      {"Source", s("dps")},
      {"LastError", s("")},
      {"Attempts", std::uint32_t{3}},
      {"LastAttemptUSec", std::uint64_t{1'700'000'000'000'001}},
      {"NextAttemptUSec", std::uint64_t{1'700'000'000'000'002}},
      {"ProvisionedUSec", std::uint64_t{1'700'000'000'000'003}},
      {"CertificateNotAfterUSec", std::uint64_t{1'900'000'000'000'004}},
  };
  EXPECT_EQ(client_->all(), expected);
  for (const auto& [name, value] : expected) {
    EXPECT_EQ(client_->value(name), value) << name;
  }
}

TEST_F(BusService, AnEmptyModelReadsAsUnprovisionedZerosAndEmptyStrings) {
  const Values all = client_->all();
  ASSERT_EQ(all.size(), 13u);
  EXPECT_EQ(all.at("State"), s("unprovisioned"));
  for (const char* name : {"AssignedHub", "DeviceId", "RegistrationId", "IdScope", "Substatus",
                           "Source", "LastError"}) {
    EXPECT_EQ(all.at(name), s("")) << name;
  }
  EXPECT_EQ(all.at("Attempts"), Value{std::uint32_t{0}});
  for (const char* name :
       {"LastAttemptUSec", "NextAttemptUSec", "ProvisionedUSec", "CertificateNotAfterUSec"}) {
    EXPECT_EQ(all.at(name), Value{std::uint64_t{0}}) << name;
  }
}

TEST_F(BusService, EveryStateHasItsName) {
  const std::pair<app::ProvisioningState, const char*> states[] = {
      {app::ProvisioningState::Unprovisioned, "unprovisioned"},
      {app::ProvisioningState::Provisioning, "provisioning"},
      {app::ProvisioningState::Provisioned, "provisioned"},
      {app::ProvisioningState::Retrying, "retrying"},
      {app::ProvisioningState::Failed, "failed"},
  };
  for (const auto& [state, name] : states) {
    control_.model.state = state;
    EXPECT_EQ(client_->value("State"), s(name));
  }
}

// Strings from DPS replies and files are hostile: the bus carries them escaped, never raw, and
// bytes that are not UTF-8 do not make sd-bus refuse the reply.
TEST_F(BusService, StringPropertiesAreSanitized) {
  const std::string hostile = "\x1b]0;pwned\x07\nWATCHDOG=1";
  control_.model.last_error = hostile;
  control_.model.registration_id = "gw-\xff\xfe";
  const Value last_error = client_->value("LastError");
  EXPECT_EQ(last_error, Value{core::sanitize_text(hostile)});
  const std::string text = std::get<std::string>(last_error);
  EXPECT_EQ(text.find_first_of("\x1b\x07\n"), std::string::npos) << text;
  EXPECT_EQ(client_->value("RegistrationId"), Value{core::sanitize_text("gw-\xff\xfe")});
}

TEST_F(BusService, PropertyErrorsHaveTheirDbusNames) {
  EXPECT_EQ(client_->get("NoSuchProperty").error_name,
            "org.freedesktop.DBus.Error.UnknownProperty");
  const CallResult set = client_->call(kProperties, "Set", [](sd_bus_message* m) {
    return sd_bus_message_append(m, "ssv", kServiceInterface, "State", "s", "provisioned");
  });
  EXPECT_EQ(set.error_name, "org.freedesktop.DBus.Error.PropertyReadOnly");
  EXPECT_EQ(client_->call(kServiceInterface, "NoSuchMethod").error_name,
            "org.freedesktop.DBus.Error.UnknownMethod");
}

// The daemon decides when the registration runs (now, joined to a running one, or deferred to
// the end of the rate limit's interval); the reply carries exactly its answer, on every call.
TEST_F(BusService, ReprovisionRepliesWithTheStartTimeTheDaemonChose) {
  for (const std::uint64_t start :
       {std::uint64_t{1'700'000'000'000'000}, std::uint64_t{1'700'000'009'500'000},
        std::uint64_t{1'700'000'009'500'000}}) {
    control_.start_usec = start;
    const CallResult r = client_->call(kServiceInterface, "Reprovision");
    ASSERT_TRUE(r.ok()) << r.error_name << ": " << r.error_message;
    std::uint64_t replied = 0;
    ASSERT_GE(sd_bus_message_read(r.reply.get(), "t", &replied), 0);
    EXPECT_EQ(replied, start);
  }
  EXPECT_EQ(control_.reprovision_calls, 3);
}

TEST_F(BusService, GetConnectionInfoHandsOutTheAssignmentAndKey) {
  control_.model = provisioned_model();
  control_.info =
      app::ConnectionInfo{"hub-a.example.test", "device-7", "symmetric_key", "c2VjcmV0a2V5PT0="};
  const CallResult r = client_->call(kServiceInterface, "GetConnectionInfo");
  ASSERT_TRUE(r.ok()) << r.error_name << ": " << r.error_message;
  const Values expected{{"AssignedHub", s("hub-a.example.test")},
                        {"DeviceId", s("device-7")},
                        {"AuthType", s("symmetric_key")},
                        {"SymmetricKey", s("c2VjcmV0a2V5PT0=")}};
  EXPECT_EQ(read_dict(r.reply.get()), expected);
  EXPECT_EQ(control_.info_calls, 1);
}

TEST_F(BusService, GetConnectionInfoBeforeAnAssignmentIsNotProvisioned) {
  control_.model.state = app::ProvisioningState::Retrying;
  const CallResult r = client_->call(kServiceInterface, "GetConnectionInfo");
  EXPECT_EQ(r.error_name, kNotProvisioned) << r.error_message;
  EXPECT_NE(r.error_message.find("State=retrying"), std::string::npos) << r.error_message;
}

// PropertiesChanged names exactly the properties whose values changed, with the new values
// inline (EmitsChangedSignal=true: nothing is merely invalidated), and nothing at all for a
// status_changed() that changed nothing.
TEST_F(BusService, PropertiesChangedCarriesExactlyWhatChanged) {
  control_.model.state = app::ProvisioningState::Provisioning;
  control_.model.attempts = 1;
  service_->status_changed();
  expect_signals(1);
  EXPECT_EQ(client_->changes()[0].interface, kServiceInterface);
  EXPECT_EQ(client_->changes()[0].changed,
            (Values{{"State", s("provisioning")}, {"Attempts", std::uint32_t{1}}}));
  EXPECT_TRUE(client_->changes()[0].invalidated.empty());

  service_->status_changed();  // nothing changed: no signal
  control_.model.last_error = "DPS said \x1b[31mno";
  service_->status_changed();
  expect_signals(2);
  // Signals arrive in order: had the empty status_changed() emitted, this would be it.
  EXPECT_EQ(client_->changes()[1].changed,
            (Values{{"LastError", Value{core::sanitize_text("DPS said \x1b[31mno")}}}));

  // An assignment moves hub, device and substatus together, each in the same signal.
  control_.model = provisioned_model();
  control_.model.last_error = "DPS said \x1b[31mno";
  service_->status_changed();
  expect_signals(3);
  const Values& changed = client_->changes()[2].changed;
  EXPECT_EQ(changed.at("State"), s("provisioned"));
  EXPECT_EQ(changed.at("AssignedHub"), s("hub-a.example.test"));
  EXPECT_EQ(changed.at("DeviceId"), s("device-7"));
  EXPECT_EQ(changed.at("Substatus"), s("initialAssignment"));
  EXPECT_EQ(changed.count("LastError"), 0u);
  EXPECT_EQ(changed.size(), 12u);  // all but LastError, which stayed
  EXPECT_EQ(client_->changes().size(), 3u);
}

// Root is not the only privileged caller: group dpsd is. Everyone else gets AccessDenied from
// the service itself, and the daemon is never asked.
TEST_F(BusService, CallerOutsideGroupDpsdIsDenied) {
  control_.model = provisioned_model();
  control_.info = app::ConnectionInfo{"hub", "device", "symmetric_key", "a2V5"};
  EXPECT_EQ(call_as_nobody(loop_.get(), bus_.plain_address(), "Reprovision", {}), kAccessDenied);
  EXPECT_EQ(call_as_nobody(loop_.get(), bus_.plain_address(), "GetConnectionInfo", {}),
            kAccessDenied);
  EXPECT_EQ(control_.reprovision_calls, 0);
  EXPECT_EQ(control_.info_calls, 0);
}

TEST_F(BusService, MemberOfGroupDpsdIsAllowed) {
  control_.model = provisioned_model();
  control_.info = app::ConnectionInfo{"hub", "device", "symmetric_key", "a2V5"};
  EXPECT_EQ(call_as_nobody(loop_.get(), bus_.plain_address(), "Reprovision", {dpsd_gid_}), "");
  EXPECT_EQ(call_as_nobody(loop_.get(), bus_.plain_address(), "GetConnectionInfo", {dpsd_gid_}),
            "");
  EXPECT_EQ(control_.reprovision_calls, 1);
  EXPECT_EQ(control_.info_calls, 1);
}

// The bus daemon restarts: the service reconnects on its own (app/bus_connection.hpp), owns the
// name again, and serves the model as it is now, including what changed while it was away.
TEST_F(BusService, ComesBackWhenTheBusRestarts) {
  control_.model = provisioned_model();
  client_.reset();
  bus_.kill();
  run_loop_for(loop_.get(), 100ms);  // the service notices the loss
  control_.model.last_error = "changed while off the bus";
  service_->status_changed();  // off the bus: nothing to send, nothing must break
  bus_.start();
  client_ = std::make_unique<BusClient>(bus_.plain_address(), loop_.get());
  // Asked every 100 ms: until the name is owned again, the bus answers ServiceUnknown.
  CallResult state = client_->get("State");
  const auto deadline = std::chrono::steady_clock::now() + 15s;
  while (!state.ok() && std::chrono::steady_clock::now() < deadline) {
    run_loop_for(loop_.get(), 100ms);
    state = client_->get("State");
  }
  ASSERT_TRUE(state.ok()) << "the service was not back on the restarted bus within 15 s: "
                          << state.error_name;
  EXPECT_EQ(read_variant(state.reply.get()), s("provisioned"));
  EXPECT_EQ(client_->value("LastError"), s("changed while off the bus"));
  // And it signals again from the new connection.
  control_.model.attempts = 4;
  service_->status_changed();
  expect_signals(1);
  EXPECT_EQ(client_->changes()[0].changed, (Values{{"Attempts", std::uint32_t{4}}}));
}

}  // namespace
}  // namespace dpsd::test
