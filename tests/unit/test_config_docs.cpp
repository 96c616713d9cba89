// Every key is documented once, and the documents agree with the schema: the shipped
// etc/dpsd/config.toml and the dpsd.toml(5) man page list exactly the keys of
// core::config_schema, each in its table, with the default the parser really uses.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/config_schema.hpp"

namespace dpsd::core {
namespace {

namespace schema = config_schema;

std::vector<std::string> read_lines(const std::string& relative) {
  std::ifstream in(std::filesystem::path(DPSD_SOURCE_DIR) / relative);
  EXPECT_TRUE(in.good()) << "cannot read " << relative;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

using Documented = std::map<std::string, std::vector<std::string>>;  // dotted key -> text(s)

// config.toml: "[table]" headers, and "key = value" or "#key = value" lines under them (a
// commented-out line shows the default). Values are kept to compare with the schema's default.
Documented keys_in_shipped_config() {
  Documented keys;
  static const std::regex kHeader(R"(^\[([a-z0-9_.]+)\]\s*$)");
  static const std::regex kKey(R"(^#?\s*([a-z0-9_]+)\s*=\s*(.*?)\s*$)");
  std::string table;
  for (const auto& line : read_lines("etc/dpsd/config.toml")) {
    std::smatch match;
    if (std::regex_match(line, match, kHeader)) {
      table = match[1];
    } else if (std::regex_match(line, match, kKey)) {
      keys[table.empty() ? std::string(match[1]) : table + "." + std::string(match[1])].push_back(
          match[2]);
    }
  }
  return keys;
}

// The man page: ".SH [table]" sections of ".TP" / ".B key" / description entries. The text of
// an entry is unescaped from roff (\- and \(dq) so it can be compared with the schema's default.
Documented keys_in_man_page() {
  Documented keys;
  std::string table;
  std::string key;
  bool after_tp = false;
  for (auto line : read_lines("packaging/man/dpsd.toml.5")) {
    for (const auto& [from, to] :
         {std::pair<std::string, std::string>{"\\-", "-"}, {"\\(dq", "\""}, {"\\ ", " "}}) {
      for (auto at = line.find(from); at != std::string::npos; at = line.find(from, at)) {
        line.replace(at, from.size(), to);
        at += to.size();
      }
    }
    if (line.rfind(".SH", 0) == 0) {
      const auto open = line.find('[');
      const auto close = line.find(']');
      table = open != std::string::npos && close != std::string::npos
                  ? line.substr(open + 1, close - open - 1)
                  : "";
      key.clear();
    } else if (line == ".TP") {
      after_tp = true;
      key.clear();
      continue;
    } else if (after_tp && line.rfind(".B ", 0) == 0 && !table.empty()) {
      key = table + "." + line.substr(3);
      keys[key].push_back("");
    } else if (!key.empty()) {
      keys[key].back() += line + " ";
    }
    after_tp = false;
  }
  return keys;
}

TEST(ConfigSchema, TablesAndKeysAreConsistent) {
  std::set<std::string> dotted;
  for (const auto& key : schema::keys()) {
    EXPECT_TRUE(schema::is_table(key.table)) << key.dotted();
    EXPECT_TRUE(dotted.insert(key.dotted()).second) << key.dotted() << " is in the table twice";
    EXPECT_EQ(schema::find_key(key.table, key.name), &key);
    EXPECT_FALSE(key.doc.empty()) << key.dotted();
  }
  for (const auto table : schema::tables()) {
    EXPECT_TRUE(std::any_of(schema::keys().begin(), schema::keys().end(),
                            [&](const schema::Key& k) { return k.table == table; }))
        << table << " has no keys";
  }
  for (const auto& required : schema::required_keys()) {
    EXPECT_EQ(dotted.count(std::string(required.key)), 1U) << required.key;
  }
}

TEST(ConfigDocs, ShippedConfigDocumentsEveryKeyWithItsDefault) {
  const Documented documented = keys_in_shipped_config();
  for (const auto& key : schema::keys()) {
    // A refused key is not something to set: the man page says why it is refused.
    if (key.type == schema::ValueType::Refused) continue;
    const auto found = documented.find(key.dotted());
    if (found == documented.end()) {
      ADD_FAILURE() << key.dotted() << " is not in etc/dpsd/config.toml (as \"#" << key.name
                    << " = …\" under [" << key.table << "])";
      continue;
    }
    if (!key.default_value.empty()) {
      const auto& values = found->second;
      EXPECT_NE(std::find(values.begin(), values.end(), key.default_value), values.end())
          << key.dotted() << ": etc/dpsd/config.toml should show the default, \"#" << key.name
          << " = " << key.default_value << "\"; it has " << ::testing::PrintToString(values);
    }
  }
  for (const auto& [dotted, values] : documented) {
    const auto dot = dotted.rfind('.');
    EXPECT_TRUE(dot != std::string::npos &&
                schema::find_key(dotted.substr(0, dot), dotted.substr(dot + 1)) != nullptr)
        << "etc/dpsd/config.toml documents " << dotted << ", which the schema does not have";
  }
}

TEST(ConfigDocs, ManPageDocumentsEveryKeyWithItsDefault) {
  const Documented documented = keys_in_man_page();
  for (const auto& key : schema::keys()) {
    const auto found = documented.find(key.dotted());
    if (found == documented.end()) {
      ADD_FAILURE() << key.dotted() << " is not in dpsd.toml(5) (as \".B " << key.name
                    << "\" under \".SH [" << key.table << "]\")";
      continue;
    }
    EXPECT_EQ(found->second.size(), 1U) << key.dotted() << " is documented more than once";
    if (!key.default_value.empty()) {
      const std::string expected = "(default " + std::string(key.default_value);
      EXPECT_NE(found->second.front().find(expected), std::string::npos)
          << key.dotted() << ": the man page should say " << expected << "; it says "
          << found->second.front();
    }
  }
  for (const auto& [dotted, text] : documented) {
    const auto dot = dotted.rfind('.');
    EXPECT_TRUE(schema::find_key(dotted.substr(0, dot), dotted.substr(dot + 1)) != nullptr)
        << "dpsd.toml(5) documents " << dotted << ", which the schema does not have";
  }
}

// What a config holds, field by field, to compare two of them.
std::string describe(const Config& c) {
  std::ostringstream out;
  const auto opt = [](const auto& value) {
    std::ostringstream text;
    if (value) {
      text << *value;
    } else {
      text << "(unset)";
    }
    return text.str();
  };
  out << c.endpoint_host << '|' << opt(c.endpoint_port) << '|' << c.id_scope << '|'
      << c.registration_id << '|' << opt(c.payload_file) << '|' << opt(c.payload_json) << '|'
      << static_cast<int>(c.reprovision_on_start) << '|' << c.stale_after.count() << '|'
      << transport_name(c.transport) << '|' << c.websocket_port << '|'
      << (c.proxy ? c.proxy->display() : "(none)") << '|' << c.proxy_configured << '|'
      << opt(c.proxy_credentials_uri) << '|' << static_cast<int>(c.method) << '|'
      << static_cast<int>(c.enrollment) << '|' << c.symmetric_key_uri << '|' << c.identity_cert_uri
      << '|' << c.identity_pk_uri << '|' << c.sas_token_lifetime.count() << '|'
      << opt(c.trust_bundle) << '|' << opt(c.pkcs11_module) << '|' << opt(c.pkcs11_pin_file) << '|'
      << opt(c.pkcs11_pin_credential) << '|' << c.connect_timeout.count() << '|'
      << c.tls_handshake_timeout.count() << '|' << c.response_timeout.count() << '|'
      << c.retry_initial.count() << '|' << c.retry_max.count() << '|' << c.retry_refused.count()
      << '|' << c.state_dir << '|' << c.runtime_dir;
  return out.str();
}

TEST(ConfigSchema, DocumentedDefaultsAreTheParsersDefaults) {
  const std::string required =
      "provisioning.id_scope = \"0ne00000000\"\nprovisioning.registration_id = \"dev\"\n"
      "provisioning.attestation.symmetric_key = \"credential:k\"\n";
  std::string with_defaults = required;
  for (const auto& key : schema::keys()) {
    if (!key.default_value.empty()) {
      with_defaults += key.dotted() + " = " + std::string(key.default_value) + "\n";
    }
  }
  const auto implicit = parse_config({"implicit.toml", required});
  const auto spelled_out = parse_config({"spelled-out.toml", with_defaults});
  ASSERT_TRUE(implicit.config);
  ASSERT_TRUE(spelled_out.config) << spelled_out.problems.front().to_string();
  EXPECT_EQ(describe(*spelled_out.config), describe(*implicit.config));
}

}  // namespace
}  // namespace dpsd::core
