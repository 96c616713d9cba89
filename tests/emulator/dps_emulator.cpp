// The DPS emulator: a mosquitto 2.0 broker plugin (plugin API v5) that plays the device side of
// Azure IoT Hub DPS over MQTT, as described in shared/dps-protocol.md. It is deliberately an
// independent implementation (its own base64, URL decoding and SAS check) so a bug in dpsd's
// core cannot hide by being shared with the thing that tests it.
//
// Options (mosquitto.conf):
//   plugin_opt_devices <devices.json>   enrollments and scenarios (required)
//   plugin_opt_log <log.jsonl>          one JSON object per line, flushed per line (required)
//
// devices.json, re-read at the next CONNECT whenever its mtime, size or inode changed:
//   {"scope":"0ne00000000",
//    "hubs":["hub-a.emulator.test","hub-b.emulator.test"],
//    "unknown_status":401,            // 401 (default) or 404 for unknown scope/registration
//    "bad_auth":"topic",              // "topic" (default: accept, answer on res/401) or "connack"
//    "devices":{"<regid>":{"key":"<base64>","scenario":{...}}},
//               or {"x509":true,"scenario":{...}} for an X.509 individual enrollment: the device
//               connects to the listener with require_certificate true (the broker checks the
//               chain against the test CA), without a password, and its certificate's CN must
//               be the registration id (else it gets res/401, or a refused CONNACK with bad_auth
//               "connack").
//    "groups":[{"key":"<group base64>","scenario":{...}}]}
// A registration id that is not in "devices" belongs to the first group whose derived key
// (base64(HMAC-SHA256(base64decode(group key), regid))) verifies its SAS token.
//
// Scenario (every field optional; counters are per registration id, survive reconnects, and
// reset when the registration's scenario changes in devices.json):
//   name: normal | immediate | reassign | failed | disabled | throttle | unauthorized |
//         not_found | drop_mid_poll | unknown_rid | malformed | connack_refused
//   polls        number of polls to reach the final answer; the last one gets it. Default 1 for
//                normal-like scenarios, 0 (final answer on the register itself) for immediate,
//                failed and disabled.
//   retry_after  on 202 and throttle answers: number, string (sent verbatim, e.g. "abc"), or
//                null to leave it out. Default 1.
//   delay_ms     hold every answer (and kick) this long; sent from MOSQ_EVT_TICK (~100 ms).
//   device_id    deviceId in the assignment (default: the registration id).
//   hub          assignedHub (default hubs[0]; reassign cycles through hubs).
//   patch        JSON merge patch applied to the final 200 body (e.g. to drop deviceId).
//   accept_patch JSON merge patch applied to the register's 202 body (e.g. a hostile
//                operationId; a poll of an operationId the emulator never issued is answered
//                leniently, see unknown_operation).
//   throttle:        status 429|500|503 (default 429), times K (default 1): the first K
//                    requests (register or poll) get that status, then behave like normal.
//   failed:          error_code (default 400207), message.
//   unauthorized:    every request → res/401 {"errorCode":401002}; not_found → res/404 404201.
//   drop_mid_poll:   times (default 1): such polls kick the client instead of answering.
//   unknown_rid:     every answer is preceded by one with a different $rid.
//   malformed:       times (default 1), body (default `{"operationId":`): the first K answers
//                    are res/202 with that body.
//   reassign:        each new register moves to the next hub; substatus
//                    reprovisionedToInitialAssignment after the first.
//   connack_refused: times (default: always): CONNECT refused with "not authorized".
//   bad_auth:        as the top-level key, for one enrollment.
//   suback_refused:  the SUBSCRIBE is refused (SUBACK return code 0x80: mosquitto 2.0 turns
//                    MOSQ_ERR_ACL_DENIED from a MOSQ_ACL_SUBSCRIBE check into 0x80); requests
//                    are then never answered (no subscription). DPS supports only its documented
//                    filters (dps-protocol.md section 3, DOC-MQTT).
//   late_suback:     not a plugin scenario: a mosquitto plugin cannot delay a SUBACK. The TLS
//                    front end tests/support/dps_front_end.hpp holds the SUBACK and drops every
//                    request sent before it, as DPS's distributed front end may (design.md,
//                    "What the real service does").
//   drop_after_accept: times (default 1): such registers get 202 + operationId (retry_after as
//                    configured), then the client is kicked ~300 ms later. The operation stays
//                    alive: a poll of that operationId on the next connection gets the final 200
//                    (design.md: "An accepted registration (202 + operationId) lives on the
//                    service across connections").
//   conflict:        times K (default 1): the first K requests get res/409 with errorCode 409203,
//                    "Precondition failed." (dps-protocol.md section 4, from the C SDK e2e tests
//                    common_prov_e2e.c), retry_after as configured (null = absent); then normal.
//   endless_202:     every register and poll is answered 202 assigning with the configured
//                    retry-after; never a final answer.
//   Hostile family (for every field dpsd reads; `patch` covers short hostile strings):
//   oversize:        bytes N (default 1 MiB), field (default "assignedHub"): the final answer
//                    (on the register, polls default 0) carries registrationState[field] of N
//                    'a' characters.
//   qos2_flood:      count (default 100), bytes (default 100 KB): that many QoS 2 PUBLISHes of
//                    `bytes` on res/200 with $rid "q2-<n>" (never the request's), then the real
//                    answer. DPS never sends QoS 2 (it grants at most QoS 1, section 3). The
//                    broker's own limits apply (max_inflight_messages 20, max_queued_messages
//                    1000): a client that never completes the QoS 2 flow gets no more.
//   unsolicited_flood: count (default 200), rid_bytes (default 60000): that many answers with a
//                    wrong $rid of that many characters, then the real answer.
//   Error bodies with control characters: unauthorized/not_found/failed take `message` verbatim.
//
// Service rules enforced for every enrollment (DPS "quotas and limits",
// learn.microsoft.com/azure/iot-dps/about-iot-dps#quotas-and-limits, quoted in design.md):
//   - at most 5 polls per 10 s per registration id: the 6th poll inside any 10 s window gets
//     res/429 (errorCode 429001: UNCERTAIN, no source names the detail code of this 429) with
//     retry-after = seconds until the window has room, and is logged as
//     {"event":"poll_rate_exceeded"}; rejected polls do not count toward the window;
//   - a request (topic + payload) over 96 KB is refused: logged as "request_too_large" and the
//     client kicked (UNCERTAIN whether DPS disconnects or answers 413).
//
// Log events (one JSON object a line, "t" = Unix ms): config, ready, connect (client_id,
// username, password, auth, regid, result), subscribe, publish (the raw request), register and
// poll (client_id, regid, rid, operation_id), reply (topic and payload, each cut to 4 KB with
// *_bytes giving the full size), flood (one line per flood), kick, no_reply, disconnect.
//
// ACL: subscribe only under "$dps/registrations/res/"; publish only register and poll topics.
// Requests are swallowed (MOSQ_ERR_ACL_DENIED from MOSQ_EVT_MESSAGE; a QoS 1 publisher still gets
// its PUBACK) and answered to that client only, and only when it has a subscription, as DPS does.
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <openssl/hmac.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#define DPS_EXPORT __attribute__((visibility("default")))

namespace {

using json = nlohmann::json;

constexpr std::string_view kResFilter = "$dps/registrations/res/#";
constexpr std::string_view kResPrefix = "$dps/registrations/res/";
constexpr std::string_view kRegisterPrefix = "$dps/registrations/PUT/iotdps-register/?";
constexpr std::string_view kPollPrefix = "$dps/registrations/GET/iotdps-get-operationstatus/?";

// ---------------------------------------------------------------------------------------------
// Encoding helpers

std::string base64_encode(const unsigned char* data, std::size_t len) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((len + 2) / 3 * 4);
  for (std::size_t i = 0; i < len; i += 3) {
    std::uint32_t n = static_cast<std::uint32_t>(data[i]) << 16;
    if (i + 1 < len) n |= static_cast<std::uint32_t>(data[i + 1]) << 8;
    if (i + 2 < len) n |= data[i + 2];
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += i + 1 < len ? kAlphabet[(n >> 6) & 63] : '=';
    out += i + 2 < len ? kAlphabet[n & 63] : '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char c = in[i + k];
      if (c == '=' && i + 4 == in.size() && k >= 2) {
        v[k] = 0;
        ++pad;
      } else {
        if (pad > 0) return std::nullopt;  // data after padding
        v[k] = value(c);
        if (v[k] < 0) return std::nullopt;
      }
    }
    std::uint32_t n = (static_cast<std::uint32_t>(v[0]) << 18) |
                      (static_cast<std::uint32_t>(v[1]) << 12) |
                      (static_cast<std::uint32_t>(v[2]) << 6) | static_cast<std::uint32_t>(v[3]);
    out += static_cast<char>((n >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

// Percent-decoding only; '+' stays '+' because SAS signatures are base64 and a raw '+' in them
// means '+' (the Node SDK escapes it, others do too, but a literal one must not become a space).
std::string url_decode(std::string_view in) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int hi = hex(in[i + 1]);
      int lo = hex(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += in[i];
  }
  return out;
}

std::optional<std::string> hmac_sha256_b64(std::string_view key_b64, std::string_view message) {
  auto key = base64_decode(key_b64);
  if (!key) return std::nullopt;
  unsigned char md[32];
  unsigned int md_len = sizeof md;
  if (HMAC(EVP_sha256(), key->data(), static_cast<int>(key->size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), md,
           &md_len) == nullptr) {
    return std::nullopt;
  }
  return base64_encode(md, md_len);
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// "a=1&b=2" → {a:1, b:2}; values stay raw (the $rid is echoed byte for byte).
std::map<std::string, std::string> parse_query(std::string_view q) {
  std::map<std::string, std::string> out;
  while (!q.empty()) {
    auto amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    auto eq = part.find('=');
    if (eq == std::string_view::npos) {
      out.emplace(std::string(part), "");
    } else {
      out.emplace(std::string(part.substr(0, eq)), std::string(part.substr(eq + 1)));
    }
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return out;
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "2020-04-10T03:11:13.0276997Z": seven fractional digits, like the real service.
std::string utc_timestamp() {
  auto now = std::chrono::system_clock::now();
  auto ticks = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ticks / 1000000000);
  long frac = static_cast<long>((ticks % 1000000000) / 100);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%07ldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Configuration (devices.json)

struct Enrollment {
  std::string key;
  json scenario = json::object();
  int group = -1;  // index into groups, or -1 for an individual enrollment
  bool x509 = false;
};

struct Config {
  std::string scope;
  std::vector<std::string> hubs;
  std::map<std::string, Enrollment> devices;
  std::vector<Enrollment> groups;
  int unknown_status = 401;
  std::string bad_auth = "topic";
};

Config parse_config(const json& doc) {
  Config c;
  c.scope = doc.at("scope").get<std::string>();
  c.hubs = doc.value("hubs", std::vector<std::string>{"hub-a.emulator.test"});
  if (c.hubs.empty()) c.hubs.push_back("hub-a.emulator.test");
  c.unknown_status = doc.value("unknown_status", 401);
  c.bad_auth = doc.value("bad_auth", "topic");
  if (doc.contains("devices")) {
    for (const auto& [regid, dev] : doc.at("devices").items()) {
      Enrollment e;
      e.x509 = dev.value("x509", false);
      e.key = e.x509 ? dev.value("key", "") : dev.at("key").get<std::string>();
      if (dev.contains("scenario") && dev["scenario"].is_object()) e.scenario = dev["scenario"];
      c.devices.emplace(regid, std::move(e));
    }
  }
  if (doc.contains("groups")) {
    int index = 0;
    for (const auto& g : doc.at("groups")) {
      Enrollment e;
      e.key = g.at("key").get<std::string>();
      if (g.contains("scenario") && g["scenario"].is_object()) e.scenario = g["scenario"];
      e.group = index++;
      c.groups.push_back(std::move(e));
    }
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Run-time state

struct Operation {
  std::string regid;
  std::string hub;
  std::string substatus;
  std::string created;
  json payload;  // the request's custom payload, echoed back in the assignment
  int group = -1;
  int polls = 0;
};

// Per registration id; lives as long as the broker.
struct DeviceState {
  json scenario;  // the scenario the counters below were set from
  int throttle_left = 0;
  int malformed_left = 0;
  int drop_left = 0;
  int connack_left = 0;  // < 0: always
  int conflict_left = 0;
  int accept_drop_left = 0;
  int assignments = 0;  // registers seen under "reassign"
  // When the polls inside the last 10 s were answered; kept across scenario changes, because
  // the service's limit is per registration id, not per test step.
  std::deque<std::chrono::steady_clock::time_point> poll_times;
};

// Per live connection, keyed by client id.
struct ClientState {
  // Only compared, never dereferenced: tells this connection from an older one with the same
  // client id whose DISCONNECT arrives after the new CONNECT (session takeover).
  const mosquitto* connection = nullptr;
  std::uint64_t serial = 0;  // tells a reconnected client from the one a delayed reply was for
  std::string regid;
  bool auth_ok = false;
  int auth_status = 401;
  std::string auth_reason;
  json scenario = json::object();
  int group = -1;
};

struct Outgoing {
  std::chrono::steady_clock::time_point due;
  std::string client_id;
  std::uint64_t serial = 0;
  bool kick = false;
  std::string topic;
  std::string payload;
  int qos = 1;
  // A flood: `repeat` copies, the topic's "{n}" replaced by the copy's index; logged as one line.
  int repeat = 0;
};

constexpr std::size_t kLogCut = 4096;
constexpr std::size_t kMaxRequestBytes = 96 * 1024;  // DPS quotas and limits: messages ≤ 96 KB
constexpr int kPollsPerWindow = 5;                   // DPS quotas and limits: 5 polls / 10 s
constexpr std::chrono::seconds kPollWindow{10};

// Big values are cut in the log so a hostile scenario cannot make the log (and every test that
// parses it) as big as the attack; *_bytes keeps the real size.
void put_cut(json& line, const char* key, const std::string& value) {
  if (value.size() <= kLogCut) {
    line[key] = value;
    return;
  }
  line[key] = value.substr(0, kLogCut);
  line[std::string(key) + "_bytes"] = value.size();
}

struct AuthResult {
  bool ok = false;
  std::string reason = "ok";
  int status = 401;
  std::string regid;
  const Enrollment* enrollment = nullptr;
};

class Emulator {
 public:
  Emulator(std::string devices_path, std::string log_path)
      : devices_path_(std::move(devices_path)),
        log_(log_path, std::ios::app),
        rng_(std::random_device{}()) {}

  bool ok() const { return static_cast<bool>(log_); }

  // Loads devices.json when it changed on disk. Returns false (and logs) on a parse error, in
  // which case the previous configuration stays in force.
  bool reload(bool force = false) {
    struct stat st {};
    if (::stat(devices_path_.c_str(), &st) != 0) {
      log({{"event", "config_error"}, {"error", "cannot stat " + devices_path_}});
      return false;
    }
    std::array<std::int64_t, 4> stamp{st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                                      static_cast<std::int64_t>(st.st_size),
                                      static_cast<std::int64_t>(st.st_ino)};
    if (!force && stamp == stamp_) return true;
    try {
      std::ifstream in(devices_path_);
      json doc = json::parse(in);
      config_ = parse_config(doc);
      stamp_ = stamp;
      log({{"event", "config"},
           {"scope", config_.scope},
           {"devices", config_.devices.size()},
           {"groups", config_.groups.size()}});
      return true;
    } catch (const std::exception& e) {
      log({{"event", "config_error"}, {"error", e.what()}});
      return false;
    }
  }

  void log(json line) {
    line["t"] = unix_ms();
    // Payloads are arbitrary bytes; never let invalid UTF-8 throw out of a broker callback.
    log_ << line.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
    log_.flush();
  }

  int on_basic_auth(const mosquitto_evt_basic_auth& ev) {
    const char* cid_c = mosquitto_client_id(ev.client);
    const std::string cid = cid_c ? cid_c : "";
    const std::string username = ev.username ? ev.username : "";
    reload();
    // Non-null only on the require_certificate listener; a new reference we must free.
    std::unique_ptr<X509, decltype(&X509_free)> cert(
        static_cast<X509*>(mosquitto_client_certificate(ev.client)), X509_free);
    AuthResult r = authenticate(cid, username, ev.password, cert.get());

    json scenario = r.enrollment ? r.enrollment->scenario : json::object();
    json line = {
        {"event", "connect"},   {"client_id", cid},
        {"username", username}, {"password", ev.password ? json(ev.password) : json(nullptr)},
        {"auth", r.reason},     {"regid", r.regid}};
    if (cert) line["cert_cn"] = common_name(cert.get());
    if (r.enrollment) {
      line["enrollment"] =
          r.enrollment->group < 0 ? "individual" : "group:" + std::to_string(r.enrollment->group);
    }

    DeviceState* ds = r.enrollment ? &device_state(r.regid, scenario) : nullptr;
    if (ds && scenario.value("name", "normal") == "connack_refused" && ds->connack_left != 0) {
      if (ds->connack_left > 0) --ds->connack_left;
      line["result"] = "refused";
      line["why"] = "connack_refused";
      log(std::move(line));
      return MOSQ_ERR_AUTH;
    }
    const std::string bad_auth = scenario.value("bad_auth", config_.bad_auth);
    if (!r.ok && bad_auth == "connack") {
      line["result"] = "refused";
      log(std::move(line));
      return MOSQ_ERR_AUTH;
    }
    line["result"] = "accepted";
    log(std::move(line));

    ClientState cs;
    cs.connection = ev.client;
    cs.serial = ++serial_;
    cs.regid = r.regid;
    cs.auth_ok = r.ok;
    cs.auth_status = r.status;
    cs.auth_reason = r.reason;
    cs.scenario = scenario;
    cs.group = r.enrollment ? r.enrollment->group : -1;
    clients_[cid] = std::move(cs);
    return MOSQ_ERR_SUCCESS;
  }

  int on_acl_check(const mosquitto_evt_acl_check& ev) {
    const char* cid_c = mosquitto_client_id(ev.client);
    const std::string cid = cid_c ? cid_c : "";
    const std::string_view topic = ev.topic ? ev.topic : "";
    switch (ev.access) {
      case MOSQ_ACL_SUBSCRIBE: {
        // "$dps/registrations/res/#" is what every SDK uses; narrower filters under it are
        // allowed too because mosquitto_rr refuses wildcard response topics (and a targeted
        // answer reaches the client whatever it subscribed to).
        bool allowed = topic == kResFilter || starts_with(topic, kResPrefix);
        json line = {{"event", "subscribe"}, {"client_id", cid}, {"topic", topic}, {"qos", ev.qos}};
        if (auto it = clients_.find(cid);
            allowed && it != clients_.end() &&
            it->second.scenario.value("name", "") == "suback_refused") {
          allowed = false;
          line["why"] = "suback_refused";
        }
        line["allowed"] = allowed;
        log(std::move(line));
        return allowed ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
      }
      case MOSQ_ACL_UNSUBSCRIBE:
        log({{"event", "unsubscribe"}, {"client_id", cid}, {"topic", topic}});
        return MOSQ_ERR_SUCCESS;
      case MOSQ_ACL_WRITE: {
        if (parse_request(topic)) return MOSQ_ERR_SUCCESS;
        log({{"event", "publish_denied"}, {"client_id", cid}, {"topic", topic}});
        return MOSQ_ERR_ACL_DENIED;
      }
      case MOSQ_ACL_READ:
        return starts_with(topic, kResPrefix) ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
      default:
        return MOSQ_ERR_ACL_DENIED;
    }
  }

  int on_message(const mosquitto_evt_message& ev) {
    const char* cid_c = mosquitto_client_id(ev.client);
    const std::string cid = cid_c ? cid_c : "";
    const std::string topic = ev.topic ? ev.topic : "";
    const std::string body(static_cast<const char*>(ev.payload), ev.payloadlen);
    json line = {{"event", "publish"}, {"client_id", cid}, {"qos", ev.qos}};
    put_cut(line, "topic", topic);
    put_cut(line, "payload", body);
    log(std::move(line));
    if (topic.size() + body.size() > kMaxRequestBytes) {
      // DPS quotas and limits: messages up to 96 KB. UNCERTAIN how DPS refuses a larger one;
      // a disconnect is what MQTT brokers commonly do with an oversized PUBLISH.
      log({{"event", "request_too_large"},
           {"client_id", cid},
           {"bytes", topic.size() + body.size()}});
      mosquitto_kick_client_by_clientid(cid.c_str(), false);
      return MOSQ_ERR_ACL_DENIED;
    }
    auto req = parse_request(topic);
    auto it = clients_.find(cid);
    if (!req || it == clients_.end()) {
      log({{"event", "no_reply"}, {"client_id", cid}, {"why", "not a request or unknown client"}});
      return MOSQ_ERR_ACL_DENIED;
    }
    {
      json request = {{"event", req->poll ? "poll" : "register"},
                      {"client_id", cid},
                      {"regid", it->second.regid}};
      put_cut(request, "rid", req->rid);
      if (req->poll) put_cut(request, "operation_id", req->operation_id);
      log(std::move(request));
    }
    if (mosquitto_client_sub_count(ev.client) <= 0) {
      // DPS answers on the response subscription only; without one the answer is lost.
      log({{"event", "no_reply"}, {"client_id", cid}, {"why", "no subscription"}});
      return MOSQ_ERR_ACL_DENIED;
    }
    handle_request(cid, it->second, *req, body);
    // Swallow the request: DPS does not route it to anyone else.
    return MOSQ_ERR_ACL_DENIED;
  }

  int on_tick() {
    flush_outgoing(false);
    return MOSQ_ERR_SUCCESS;
  }

  int on_disconnect(const mosquitto_evt_disconnect& ev) {
    const char* cid_c = mosquitto_client_id(ev.client);
    const std::string cid = cid_c ? cid_c : "";
    log({{"event", "disconnect"}, {"client_id", cid}, {"reason", ev.reason}});
    auto it = clients_.find(cid);
    if (it != clients_.end() && it->second.connection == ev.client) clients_.erase(it);
    return MOSQ_ERR_SUCCESS;
  }

 private:
  struct Request {
    bool poll = false;
    std::string rid;
    std::string operation_id;  // URL-decoded (Python quotes it)
  };

  static std::optional<Request> parse_request(std::string_view topic) {
    Request r;
    std::map<std::string, std::string> q;
    if (starts_with(topic, kRegisterPrefix)) {
      q = parse_query(topic.substr(kRegisterPrefix.size()));
    } else if (starts_with(topic, kPollPrefix)) {
      r.poll = true;
      q = parse_query(topic.substr(kPollPrefix.size()));
      auto op = q.find("operationId");
      if (op == q.end() || op->second.empty()) return std::nullopt;
      r.operation_id = url_decode(op->second);
    } else {
      return std::nullopt;
    }
    auto rid = q.find("$rid");
    if (rid == q.end() || rid->second.empty()) return std::nullopt;
    r.rid = rid->second;
    return r;
  }

  static std::string common_name(X509* cert) {
    std::array<char, 256> cn{};
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn.data(),
                                  static_cast<int>(cn.size())) < 0) {
      return {};
    }
    return cn.data();
  }

  AuthResult authenticate(const std::string& cid, const std::string& username, const char* password,
                          X509* cert) {
    AuthResult r;
    auto fail = [&r](std::string reason, int status = 401) {
      r.ok = false;
      r.reason = std::move(reason);
      r.status = status;
      return r;
    };
    // "{scope}/registrations/{regid}/api-version=…[&…]"
    constexpr std::string_view kMid = "/registrations/";
    auto mid = username.find(kMid);
    if (mid == std::string::npos) return fail("bad_username");
    const std::string scope = username.substr(0, mid);
    const std::string rest = username.substr(mid + kMid.size());
    auto slash = rest.find('/');
    if (slash == std::string::npos) return fail("bad_username");
    r.regid = rest.substr(0, slash);
    auto query = parse_query(std::string_view(rest).substr(slash + 1));
    if (auto v = query.find("api-version"); v == query.end() || v->second.empty()) {
      return fail("no_api_version");
    }
    if (r.regid.empty()) return fail("bad_username");
    if (cid != r.regid) return fail("client_id_mismatch");
    if (!iequals(scope, config_.scope)) return fail("unknown_scope", config_.unknown_status);

    auto dev = config_.devices.find(r.regid);
    if (dev != config_.devices.end()) r.enrollment = &dev->second;

    if (cert != nullptr) {
      // The broker verified the chain (require_certificate); DPS then wants an X.509
      // enrollment for this registration id and the certificate's CN to be that id.
      if (r.enrollment == nullptr || !r.enrollment->x509) {
        r.enrollment = nullptr;
        return fail("unknown_registration", config_.unknown_status);
      }
      if (common_name(cert) != r.regid) return fail("cn_mismatch");
      r.ok = true;
      return r;
    }
    if (r.enrollment != nullptr && r.enrollment->x509) return fail("x509_enrollment_without_cert");

    if (password == nullptr) return fail("no_password");
    constexpr std::string_view kPrefix = "SharedAccessSignature ";
    std::string_view token = password;
    if (!starts_with(token, kPrefix)) return fail("bad_token");
    auto fields = parse_query(token.substr(kPrefix.size()));
    auto sr = fields.find("sr");
    auto sig = fields.find("sig");
    auto se = fields.find("se");
    if (sr == fields.end() || sig == fields.end() || se == fields.end()) {
      return fail("bad_token");
    }
    std::int64_t expiry = 0;
    try {
      std::size_t used = 0;
      expiry = std::stoll(se->second, &used);
      if (used != se->second.size()) return fail("bad_token");
    } catch (const std::exception&) {
      return fail("bad_token");
    }
    if (expiry < unix_ms() / 1000) return fail("expired");
    if (!iequals(url_decode(sr->second), config_.scope + "/registrations/" + r.regid)) {
      return fail("sr_mismatch");
    }
    const std::string to_sign = sr->second + "\n" + se->second;
    const std::string presented = url_decode(sig->second);

    if (r.enrollment != nullptr) {
      auto expected = hmac_sha256_b64(r.enrollment->key, to_sign);
      if (!expected || *expected != presented) return fail("bad_signature");
      r.ok = true;
      return r;
    }
    for (const auto& g : config_.groups) {
      auto derived = hmac_sha256_b64(g.key, r.regid);
      if (!derived) continue;
      auto expected = hmac_sha256_b64(*derived, to_sign);
      if (expected && *expected == presented) {
        r.enrollment = &g;
        r.ok = true;
        return r;
      }
    }
    // Not enrolled individually and no group's derived key signs this: from DPS's side the
    // registration does not exist (this also covers a device signing with the group key itself).
    return fail("unknown_registration", config_.unknown_status);
  }

  DeviceState& device_state(const std::string& regid, const json& scenario) {
    DeviceState& ds = devices_[regid];
    if (ds.scenario != scenario) {
      auto poll_times = std::move(ds.poll_times);
      ds = DeviceState{};
      ds.poll_times = std::move(poll_times);
      ds.scenario = scenario;
      const std::string name = scenario.value("name", "normal");
      ds.throttle_left = name == "throttle" ? scenario.value("times", 1) : 0;
      ds.malformed_left = name == "malformed" ? scenario.value("times", 1) : 0;
      ds.drop_left = name == "drop_mid_poll" ? scenario.value("times", 1) : 0;
      ds.connack_left = name == "connack_refused" ? scenario.value("times", -1) : 0;
      ds.conflict_left = name == "conflict" ? scenario.value("times", 1) : 0;
      ds.accept_drop_left = name == "drop_after_accept" ? scenario.value("times", 1) : 0;
    }
    return ds;
  }

  std::string random_hex(int digits) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    for (int i = 0; i < digits; ++i) out += kHex[rng_() % 16];
    return out;
  }

  std::string uuid() {
    std::string h = random_hex(32);
    h[12] = '4';
    h[16] = "89ab"[rng_() % 4];
    return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
           "-" + h.substr(20);
  }

  // "<digit>.<16 hex>.<uuid>", the shape seen from the real service.
  std::string new_operation_id() {
    return std::to_string(rng_() % 10) + "." + random_hex(16) + "." + uuid();
  }

  json error_body(int code, const std::string& message) {
    return {{"errorCode", code},
            {"trackingId", uuid()},
            {"message", message},
            {"timestampUtc", utc_timestamp()}};
  }

  static std::string topic_for(int status, const std::string& rid, const json* retry_after) {
    // Always "?$rid=…" first, then "&retry-after=…", as the real traces (dps-protocol.md 3).
    std::string t = std::string(kResPrefix) + std::to_string(status) + "/?$rid=" + rid;
    if (retry_after != nullptr && !retry_after->is_null()) {
      t += "&retry-after=";
      t += retry_after->is_string() ? retry_after->get<std::string>() : retry_after->dump();
    }
    return t;
  }

  json final_body(const std::string& op_id, const Operation& op, const json& sc) {
    const std::string name = sc.value("name", "normal");
    const std::string now = utc_timestamp();
    json body;
    if (name == "disabled") {
      body = {{"operationId", ""},
              {"status", "disabled"},
              {"registrationState", {{"registrationId", op.regid}, {"status", "disabled"}}}};
    } else if (name == "failed") {
      body = {
          {"operationId", op_id},
          {"status", "failed"},
          {"registrationState",
           {{"registrationId", op.regid},
            {"createdDateTimeUtc", op.created},
            {"status", "failed"},
            {"errorCode", sc.value("error_code", 400207)},
            {"errorMessage", sc.value("message", "Custom allocation failed with status code: 400")},
            {"lastUpdatedDateTimeUtc", now},
            {"etag", etag()}}}};
    } else {
      json state = {{"registrationId", op.regid},    {"createdDateTimeUtc", op.created},
                    {"assignedHub", op.hub},         {"deviceId", sc.value("device_id", op.regid)},
                    {"status", "assigned"},          {"substatus", op.substatus},
                    {"lastUpdatedDateTimeUtc", now}, {"etag", etag()}};
      if (op.group >= 0) {
        state["symmetricKey"] = {{"enrollmentGroupId", "group-" + std::to_string(op.group)}};
      }
      if (op.payload.is_object()) state["payload"] = op.payload;
      body = {{"operationId", op_id}, {"status", "assigned"}, {"registrationState", state}};
    }
    if (sc.contains("patch")) body.merge_patch(sc["patch"]);
    return body;
  }

  std::string etag() {
    const std::string raw = "\"" + uuid() + "\"";
    return base64_encode(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
  }

  Operation new_operation(const ClientState& cs, DeviceState& ds, const json& sc) {
    Operation op;
    op.regid = cs.regid;
    op.group = cs.group;
    op.created = utc_timestamp();
    op.substatus = "initialAssignment";
    if (sc.value("name", "normal") == "reassign") {
      op.hub = config_.hubs[static_cast<std::size_t>(ds.assignments) % config_.hubs.size()];
      if (ds.assignments > 0) op.substatus = "reprovisionedToInitialAssignment";
      ++ds.assignments;
    } else {
      op.hub = sc.value("hub", config_.hubs.front());
    }
    return op;
  }

  // 5 polls per 10 s per registration id (DPS quotas and limits). Returns the seconds until the
  // window has room when this poll is over the limit, else records it and returns nullopt.
  static std::optional<int> poll_over_limit(DeviceState& ds) {
    const auto now = std::chrono::steady_clock::now();
    while (!ds.poll_times.empty() && now - ds.poll_times.front() >= kPollWindow) {
      ds.poll_times.pop_front();
    }
    if (static_cast<int>(ds.poll_times.size()) >= kPollsPerWindow) {
      const auto wait = ds.poll_times.front() + kPollWindow - now;
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(wait).count();
      return std::max<int>(1, static_cast<int>((ms + 999) / 1000));
    }
    ds.poll_times.push_back(now);
    return std::nullopt;
  }

  void handle_request(const std::string& cid, const ClientState& cs, const Request& req,
                      const std::string& body) {
    const json& sc = cs.scenario;
    const std::string name = sc.value("name", "normal");
    const json retry_after = sc.contains("retry_after") ? sc["retry_after"] : json(1);
    struct Answer {
      int status;
      json body;
      json retry;  // null: no retry-after property
    };
    std::vector<Answer> answers;
    bool kick = false;
    bool kick_after_answer = false;

    auto answer = [&](int status, json b, bool with_retry) {
      answers.push_back({status, std::move(b), with_retry ? retry_after : json(nullptr)});
    };

    if (!cs.auth_ok) {
      if (cs.auth_status == 404) {
        answer(404, error_body(404201, "Registration not found."), false);
      } else {
        answer(401, error_body(401002, "Unauthorized (" + cs.auth_reason + ")"), false);
      }
    } else {
      DeviceState& ds = device_state(cs.regid, sc);
      std::optional<int> rate_wait = req.poll ? poll_over_limit(ds) : std::nullopt;
      if (rate_wait) {
        log({{"event", "poll_rate_exceeded"},
             {"client_id", cid},
             {"regid", cs.regid},
             {"retry_after", *rate_wait}});
        answers.push_back({429,
                           error_body(429001, "Operations are being throttled for this device."),
                           json(*rate_wait)});
      } else if (name == "unauthorized") {
        answer(401, error_body(sc.value("error_code", 401002), sc.value("message", "Unauthorized")),
               false);
      } else if (name == "not_found") {
        answer(404,
               error_body(sc.value("error_code", 404201),
                          sc.value("message", "Registration not found.")),
               false);
      } else if (name == "throttle" && ds.throttle_left > 0) {
        --ds.throttle_left;
        const int status = sc.value("status", 429);
        const char* msg = status == 429   ? "Operations are being throttled for this tenant."
                          : status == 503 ? "Service unavailable."
                                          : "Internal server error.";
        answer(status,
               error_body(sc.value("error_code", status * 1000 + 1), sc.value("message", msg)),
               true);
      } else if (name == "conflict" && ds.conflict_left > 0) {
        --ds.conflict_left;
        answer(409, error_body(409203, sc.value("message", "Precondition failed.")), true);
      } else if (name == "drop_mid_poll" && req.poll && ds.drop_left > 0) {
        --ds.drop_left;
        kick = true;
      } else if (name == "malformed" && ds.malformed_left > 0) {
        --ds.malformed_left;
        answer(202, sc.value("body", std::string("{\"operationId\":")), true);
      } else {
        const bool immediate = name == "immediate" || name == "failed" || name == "disabled" ||
                               name == "oversize" || name == "qos2_flood" ||
                               name == "unsolicited_flood";
        const int polls_needed = sc.value("polls", immediate ? 0 : 1);
        std::string op_id;
        Operation* op = nullptr;
        bool bad_body = false;
        if (!req.poll) {
          Operation fresh = new_operation(cs, ds, sc);
          std::string trimmed = body;
          trimmed.erase(0, trimmed.find_first_not_of(" \t\r\n"));
          if (!trimmed.empty()) {
            json b = json::parse(body, nullptr, false);
            if (b.is_discarded() || !b.is_object()) {
              bad_body = true;
            } else if (b.contains("payload") && b["payload"].is_object()) {
              fresh.payload = b["payload"];
            }
          }
          if (!bad_body) {
            op_id = new_operation_id();
            op = &(operations_[op_id] = std::move(fresh));
          }
        } else {
          op_id = req.operation_id;
          auto it = operations_.find(op_id);
          if (it == operations_.end()) {
            // Lenient on purpose: after an emulator restart a device may keep polling an
            // operation the real (persistent) service would still know.
            log({{"event", "unknown_operation"}, {"client_id", cid}, {"operation_id", op_id}});
            it = operations_.emplace(op_id, new_operation(cs, ds, sc)).first;
          }
          op = &it->second;
          ++op->polls;
        }
        if (bad_body) {
          answer(400, error_body(400004, "BadRequest"), false);
        } else if (name != "endless_202" && op->polls >= polls_needed) {
          json final_answer = final_body(op_id, *op, sc);
          if (name == "oversize") {
            const std::string field = sc.value("field", "assignedHub");
            final_answer["registrationState"][field] =
                std::string(sc.value<std::size_t>("bytes", 1024 * 1024), 'a');
          }
          answer(200, std::move(final_answer), false);
        } else if (!req.poll) {
          json accepted = {{"operationId", op_id}, {"status", "assigning"}};
          if (sc.contains("accept_patch")) accepted.merge_patch(sc["accept_patch"]);
          answer(202, std::move(accepted), true);
          if (name == "drop_after_accept" && ds.accept_drop_left > 0) {
            --ds.accept_drop_left;
            kick_after_answer = true;
          }
        } else {
          answer(202,
                 {{"operationId", op_id},
                  {"status", "assigning"},
                  {"registrationState", {{"registrationId", cs.regid}, {"status", "assigning"}}}},
                 true);
        }
      }
    }

    const auto due =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(sc.value("delay_ms", 0));
    if (kick) {
      outgoing_.push_back(Outgoing{due, cid, cs.serial, true, {}, {}, 1, 0});
    }
    if (cs.auth_ok && !answers.empty() && answers.front().status != 429) {
      if (name == "qos2_flood") {
        outgoing_.push_back(Outgoing{due, cid, cs.serial, false,
                                     std::string(kResPrefix) + "200/?$rid=q2-{n}",
                                     std::string(sc.value<std::size_t>("bytes", 100 * 1024), 'x'),
                                     2, sc.value("count", 100)});
      } else if (name == "unsolicited_flood") {
        const std::size_t rid_bytes = sc.value<std::size_t>("rid_bytes", 60000);
        const json& a = answers.front().body;
        outgoing_.push_back(
            Outgoing{due, cid, cs.serial, false,
                     std::string(kResPrefix) + "200/?$rid={n}" + std::string(rid_bytes, 'r'),
                     a.is_string() ? a.get<std::string>() : a.dump(), 1, sc.value("count", 200)});
      }
    }
    for (auto& a : answers) {
      std::string payload = a.body.is_string() ? a.body.get<std::string>() : a.body.dump();
      if (name == "unknown_rid") {
        // A stray answer first: a client must match $rid and ignore this one.
        const std::string other = std::all_of(req.rid.begin(), req.rid.end(),
                                              [](char c) { return c >= '0' && c <= '9'; }) &&
                                          req.rid.size() < 18
                                      ? std::to_string(std::stoll(req.rid) + 1000)
                                      : "x" + req.rid;
        outgoing_.push_back(Outgoing{due, cid, cs.serial, false,
                                     topic_for(a.status, other, &a.retry), payload, 1, 0});
      }
      outgoing_.push_back(Outgoing{due, cid, cs.serial, false,
                                   topic_for(a.status, req.rid, &a.retry), std::move(payload), 1,
                                   0});
    }
    if (kick_after_answer) {
      // Later than the answer, so the broker has written the 202 before the connection goes.
      outgoing_.push_back(
          Outgoing{due + std::chrono::milliseconds(300), cid, cs.serial, true, {}, {}, 1, 0});
    }
    flush_outgoing(false);
  }

  void flush_outgoing(bool all) {
    const auto now = std::chrono::steady_clock::now();
    // Answers keep their order: stop at the first one not yet due.
    while (!outgoing_.empty() && (all || outgoing_.front().due <= now)) {
      Outgoing o = std::move(outgoing_.front());
      outgoing_.pop_front();
      auto it = clients_.find(o.client_id);
      if (it == clients_.end() || it->second.serial != o.serial) {
        json line = {{"event", "no_reply"}, {"client_id", o.client_id}, {"why", "client gone"}};
        put_cut(line, "topic", o.topic);
        log(std::move(line));
        continue;
      }
      if (o.kick) {
        log({{"event", "kick"}, {"client_id", o.client_id}});
        mosquitto_kick_client_by_clientid(o.client_id.c_str(), false);
        continue;
      }
      if (o.repeat > 0) {
        // One log line for the whole flood: logging each copy would be the flood again.
        const auto mark = o.topic.find("{n}");
        int failed = 0;
        for (int i = 0; i < o.repeat; ++i) {
          std::string topic = o.topic;
          if (mark != std::string::npos) topic.replace(mark, 3, std::to_string(i));
          failed += mosquitto_broker_publish_copy(
                        o.client_id.c_str(), topic.c_str(), static_cast<int>(o.payload.size()),
                        o.payload.data(), o.qos, false, nullptr) != MOSQ_ERR_SUCCESS;
        }
        json line = {{"event", "flood"},
                     {"client_id", o.client_id},
                     {"count", o.repeat},
                     {"qos", o.qos},
                     {"topic_bytes", o.topic.size()},
                     {"payload_bytes", o.payload.size()},
                     {"failed", failed}};
        put_cut(line, "topic", o.topic.substr(0, 256));
        log(std::move(line));
        continue;
      }
      const int rc = mosquitto_broker_publish_copy(o.client_id.c_str(), o.topic.c_str(),
                                                   static_cast<int>(o.payload.size()),
                                                   o.payload.data(), o.qos, false, nullptr);
      json line = {{"event", "reply"}, {"client_id", o.client_id}, {"rc", rc}};
      put_cut(line, "topic", o.topic);
      put_cut(line, "payload", o.payload);
      log(std::move(line));
    }
  }

  std::string devices_path_;
  std::ofstream log_;
  std::mt19937_64 rng_;
  Config config_;
  std::array<std::int64_t, 4> stamp_{-1, -1, -1, -1};
  std::map<std::string, DeviceState> devices_;
  std::map<std::string, ClientState> clients_;
  std::map<std::string, Operation> operations_;
  std::deque<Outgoing> outgoing_;
  std::uint64_t serial_ = 0;
};

// The broker is single-threaded and loads the plugin once, so one instance is enough; it is
// owned here rather than through userdata so cleanup cannot leak it.
std::unique_ptr<Emulator> g_emulator;
mosquitto_plugin_id_t* g_plugin_id = nullptr;

// Exceptions must not cross into the C broker; an internal error denies rather than crashes.
template <typename F>
int guarded(F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    if (g_emulator) g_emulator->log({{"event", "internal_error"}, {"error", e.what()}});
    return MOSQ_ERR_UNKNOWN;
  }
}

int cb_basic_auth(int, void* data, void*) {
  return guarded(
      [&] { return g_emulator->on_basic_auth(*static_cast<mosquitto_evt_basic_auth*>(data)); });
}
int cb_acl_check(int, void* data, void*) {
  return guarded(
      [&] { return g_emulator->on_acl_check(*static_cast<mosquitto_evt_acl_check*>(data)); });
}
int cb_message(int, void* data, void*) {
  return guarded([&] {
    int rc = g_emulator->on_message(*static_cast<mosquitto_evt_message*>(data));
    return rc;
  });
}
int cb_tick(int, void*, void*) {
  return guarded([&] { return g_emulator->on_tick(); });
}
int cb_disconnect(int, void* data, void*) {
  return guarded(
      [&] { return g_emulator->on_disconnect(*static_cast<mosquitto_evt_disconnect*>(data)); });
}

struct Registration {
  int event;
  MOSQ_FUNC_generic_callback cb;
};
constexpr Registration kCallbacks[] = {
    {MOSQ_EVT_BASIC_AUTH, cb_basic_auth}, {MOSQ_EVT_ACL_CHECK, cb_acl_check},
    {MOSQ_EVT_MESSAGE, cb_message},       {MOSQ_EVT_TICK, cb_tick},
    {MOSQ_EVT_DISCONNECT, cb_disconnect},
};

}  // namespace

extern "C" {

DPS_EXPORT int mosquitto_plugin_version(int supported_version_count,
                                        const int* supported_versions) {
  for (int i = 0; i < supported_version_count; ++i) {
    if (supported_versions[i] == 5) return 5;
  }
  return -1;
}

DPS_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier, void** userdata,
                                     mosquitto_opt* options, int option_count) {
  *userdata = nullptr;
  std::string devices;
  std::string log;
  for (int i = 0; i < option_count; ++i) {
    const std::string_view key = options[i].key;
    if (key == "devices") devices = options[i].value;
    if (key == "log") log = options[i].value;
  }
  if (devices.empty() || log.empty()) {
    mosquitto_log_printf(MOSQ_LOG_ERR,
                         "dps_emulator: plugin_opt_devices and plugin_opt_log are required");
    return MOSQ_ERR_INVAL;
  }
  try {
    g_emulator = std::make_unique<Emulator>(devices, log);
    if (!g_emulator->ok()) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "dps_emulator: cannot open log %s", log.c_str());
      g_emulator.reset();
      return MOSQ_ERR_INVAL;
    }
    // A broken devices.json at start is a test bug: fail loudly instead of refusing everyone.
    if (!g_emulator->reload(true)) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "dps_emulator: cannot load %s", devices.c_str());
      g_emulator.reset();
      return MOSQ_ERR_INVAL;
    }
  } catch (const std::exception& e) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "dps_emulator: %s", e.what());
    g_emulator.reset();
    return MOSQ_ERR_UNKNOWN;
  }
  g_plugin_id = identifier;
  for (const auto& r : kCallbacks) {
    int rc = mosquitto_callback_register(identifier, r.event, r.cb, nullptr, nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
      mosquitto_log_printf(MOSQ_LOG_ERR, "dps_emulator: cannot register callback %d", r.event);
      return rc;
    }
  }
  g_emulator->log({{"event", "ready"}});
  return MOSQ_ERR_SUCCESS;
}

DPS_EXPORT int mosquitto_plugin_cleanup(void*, mosquitto_opt*, int) {
  if (g_plugin_id != nullptr) {
    for (const auto& r : kCallbacks) {
      mosquitto_callback_unregister(g_plugin_id, r.event, r.cb, nullptr);
    }
  }
  if (g_emulator) g_emulator->log({{"event", "cleanup"}});
  g_emulator.reset();
  return MOSQ_ERR_SUCCESS;
}

}  // extern "C"
