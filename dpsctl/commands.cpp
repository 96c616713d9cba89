#include "commands.hpp"

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bus_client.hpp"
#include "output.hpp"

namespace dpsctl {
namespace {

Client::Deadline deadline_of(const Args& args) {
  if (args.timeout_sec == 0) return std::nullopt;
  return std::chrono::steady_clock::now() + std::chrono::seconds(args.timeout_sec);
}

int timeout_failure(const Args& args, const std::string& goal, const Properties& p, bool present) {
  print_line(std::cerr, "dpsctl: timed out after " + std::to_string(args.timeout_sec) +
                            " s waiting for " + goal + " (" + describe_state(p, present) + ")");
  return kTimeout;
}

// dpsd's LastError for a refusal already says "DPS refused the registration: 401 …"; the
// words are added only to a LastError that does not start with them (an older dpsd, or none).
[[noreturn]] void refused(const Properties& p) {
  static const std::string kRefused = "DPS refused the registration";
  const std::string last_error = escape_once(as_string(p, "LastError"));
  if (last_error.rfind(kRefused, 0) == 0) throw Failure{kFailed, last_error};
  throw Failure{kFailed, kRefused + ": " + or_dash(last_error)};
}

}  // namespace

int cmd_status(const Args& args) {
  Client client;
  const Properties p = client.get_all();
  if (args.json) {
    // ASCII only: every control character and every non-ASCII code point is a \u escape, so
    // the JSON is valid and carries no raw byte a terminal would act on.
    // --json=short (and a bare --json) is one line, as systemd's tools print it.
    std::cout << to_json(p).dump(args.json_pretty ? 2 : -1, ' ', /*ensure_ascii=*/true,
                                 nlohmann::json::error_handler_t::replace)
              << "\n";
  } else {
    print_human(std::cout, p);
  }
  return kOk;
}

int cmd_wait(const Args& args) {
  Client client;
  client.watch();  // before reading, so no change falls in between
  Properties initial;
  bool present = true;
  try {
    initial = client.get_all();
  } catch (const Failure& f) {
    if (f.code != kNotRunning) throw;
    present = false;  // NameOwnerChanged tells us when it appears
  }
  Properties last;
  bool last_present = present;
  const bool ok = client.wait(
      initial, present,
      [&](const Properties& p, bool now_present) {
        last = p;
        last_present = now_present;
        if (!now_present) return false;  // not there (yet, or for now: it may restart)
        const std::string state = as_string(p, "State");
        if (state == "failed") refused(p);
        return state == "provisioned";
      },
      deadline_of(args));
  if (!ok) return timeout_failure(args, "dpsd to be provisioned", last, last_present);
  return kOk;
}

int cmd_reprovision(const Args& args) {
  Client client;
  if (args.wait) client.watch();
  const Properties before = client.get_all();
  const std::uint64_t start_usec = client.reprovision();
  print_line(std::cout, start_words(start_usec));
  std::cout.flush();
  if (!args.wait) return kOk;
  // Done when the registration dpsd runs at start_usec (or a later one) succeeded:
  // ProvisionedUSec (µs) moves to start_usec or after. State alone cannot tell: dpsd keeps
  // State=provisioned while it confirms a valid assignment. A refusal is final only when it
  // leaves State=failed after an attempt of ours; transient failures are retried by dpsd, so we
  // keep waiting (until --timeout) and report LastError then. An attempt "of ours" started at
  // start_usec; a second of slack covers dpsd stamping LastAttemptUSec a moment before it
  // computed start_usec, or its timer's realtime reading.
  const std::uint64_t provisioned_before = as_u64(before, "ProvisionedUSec");
  const std::uint64_t ours_from = start_usec > 1000000 ? start_usec - 1000000 : 0;
  bool started = false;
  Properties last = before;
  bool last_present = true;
  const bool ok = client.wait(
      before, true,
      [&](const Properties& p, bool present) {
        last = p;
        last_present = present;
        if (!present) return false;
        const std::string state = as_string(p, "State");
        const std::uint64_t attempt = as_u64(p, "LastAttemptUSec");
        // A call that joined a running registration gets that registration's start time, which
        // LastAttemptUSec already showed: "ours" is by time, not by change.
        if (attempt != 0 && attempt >= ours_from) started = true;
        if (state == "failed" && started) refused(p);
        const std::uint64_t provisioned = as_u64(p, "ProvisionedUSec");
        return state == "provisioned" && provisioned != provisioned_before &&
               provisioned >= start_usec;
      },
      deadline_of(args));
  if (!ok) return timeout_failure(args, "the registration to finish", last, last_present);
  return kOk;
}

}  // namespace dpsctl
