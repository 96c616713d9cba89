// Placeholder plugin: logs "ready" and accepts everyone. Replaced by the full emulator.
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include <chrono>
#include <fstream>
#include <string>

namespace {
mosquitto_plugin_id_t* g_id = nullptr;
int on_auth(int, void*, void*) {
  return MOSQ_ERR_SUCCESS;
}
int on_acl(int, void*, void*) {
  return MOSQ_ERR_SUCCESS;
}
}  // namespace

extern "C" {
__attribute__((visibility("default"))) int mosquitto_plugin_version(int, const int*) {
  return 5;
}
__attribute__((visibility("default"))) int mosquitto_plugin_init(mosquitto_plugin_id_t* id, void**,
                                                                 mosquitto_opt* opts, int n) {
  g_id = id;
  for (int i = 0; i < n; ++i) {
    if (std::string(opts[i].key) == "log") {
      std::ofstream(opts[i].value, std::ios::app) << "{\"event\":\"ready\"}\n";
    }
  }
  mosquitto_callback_register(id, MOSQ_EVT_BASIC_AUTH, on_auth, nullptr, nullptr);
  mosquitto_callback_register(id, MOSQ_EVT_ACL_CHECK, on_acl, nullptr, nullptr);
  return MOSQ_ERR_SUCCESS;
}
__attribute__((visibility("default"))) int mosquitto_plugin_cleanup(void*, mosquitto_opt*, int) {
  mosquitto_callback_unregister(g_id, MOSQ_EVT_BASIC_AUTH, on_auth, nullptr);
  mosquitto_callback_unregister(g_id, MOSQ_EVT_ACL_CHECK, on_acl, nullptr);
  return MOSQ_ERR_SUCCESS;
}
}
