#include "app/bus_caller.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>

namespace dpsd::app {
namespace {

std::optional<gid_t> gid_of(const char* name) {
  group grp{};
  group* result = nullptr;
  std::vector<char> buf(16384);
  if (getgrnam_r(name, &grp, buf.data(), buf.size(), &result) != 0 || !result) {
    return std::nullopt;
  }
  return result->gr_gid;
}

// Fallback for a bus daemon that does not report UnixGroupIDs: the uid's groups per NSS.
std::vector<gid_t> groups_of_uid(uid_t uid) {
  passwd pw{};
  passwd* result = nullptr;
  std::vector<char> buf(16384);
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &result) != 0 || !result) return {};
  int n = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  if (getgrouplist(result->pw_name, result->pw_gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    if (getgrouplist(result->pw_name, result->pw_gid, groups.data(), &n) < 0) return {};
  }
  groups.resize(static_cast<std::size_t>(n));
  return groups;
}

}  // namespace

int parse_credentials(sd_bus_message* reply, CallerCredentials& creds) {
  int r = sd_bus_message_enter_container(reply, 'a', "{sv}");
  if (r < 0) return r;
  while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
    const char* key = nullptr;
    if ((r = sd_bus_message_read(reply, "s", &key)) < 0) return r;
    if (std::strcmp(key, "UnixUserID") == 0) {
      std::uint32_t uid = 0;
      if ((r = sd_bus_message_read(reply, "v", "u", &uid)) < 0) return r;
      creds.uid = uid;
      creds.have_uid = true;
    } else if (std::strcmp(key, "UnixGroupIDs") == 0) {
      if ((r = sd_bus_message_enter_container(reply, 'v', "au")) < 0) return r;
      const void* data = nullptr;
      std::size_t size = 0;
      if ((r = sd_bus_message_read_array(reply, 'u', &data, &size)) < 0) return r;
      const auto* gids = static_cast<const std::uint32_t*>(data);
      creds.groups.assign(gids, gids + size / sizeof(std::uint32_t));
      creds.have_groups = true;
      if ((r = sd_bus_message_exit_container(reply)) < 0) return r;
    } else if ((r = sd_bus_message_skip(reply, "v")) < 0) {
      return r;
    }
    if ((r = sd_bus_message_exit_container(reply)) < 0) return r;
  }
  if (r < 0) return r;
  return sd_bus_message_exit_container(reply);
}

bool is_privileged(const CallerCredentials& creds, const char* group) {
  if (!creds.have_uid) return false;
  if (creds.uid == 0) return true;
  const auto gid = gid_of(group);
  if (!gid) return false;
  const std::vector<gid_t> groups = creds.have_groups ? creds.groups : groups_of_uid(creds.uid);
  return std::find(groups.begin(), groups.end(), *gid) != groups.end();
}

}  // namespace dpsd::app
