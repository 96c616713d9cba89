#pragma once
// A SoftHSM token made at run time in a temp directory, for the PKCS#11 tests (io and
// integration): softhsm2-util creates the token and imports the EC key; the HMAC secret goes in
// through C_CreateObject, because neither softhsm2-util nor Debian 12's pkcs11-tool can import a
// CKK_GENERIC_SECRET key.
//
// The few PKCS#11 declarations needed are written out below instead of including p11-kit's
// pkcs11.h, so the integration tests need no extra include path: the function list's layout and
// these constants are the fixed PKCS#11 v2.x ABI.
#include <dlfcn.h>
#include <stdlib.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/files.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace dpsd::test {

inline const std::filesystem::path kSoftHsmModule =
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so";

namespace p11 {
using ulong = unsigned long;
struct Attribute {
  ulong type;
  void* value;
  ulong length;
};
struct Version {
  unsigned char major, minor;
};
using Fn = ulong (*)(...);
// Entries up to C_CreateObject, in the standard's order; only the ones used are typed.
struct FunctionList {
  Version version;
  ulong (*C_Initialize)(void*);
  ulong (*C_Finalize)(void*);
  Fn C_GetInfo, C_GetFunctionList;
  ulong (*C_GetSlotList)(unsigned char, ulong*, ulong*);
  Fn C_GetSlotInfo;
  ulong (*C_GetTokenInfo)(ulong, unsigned char*);  // CK_TOKEN_INFO: label is its first 32 bytes
  Fn C_GetMechanismList, C_GetMechanismInfo, C_InitToken, C_InitPIN, C_SetPIN;
  ulong (*C_OpenSession)(ulong, ulong, void*, void*, ulong*);
  ulong (*C_CloseSession)(ulong);
  Fn C_CloseAllSessions, C_GetSessionInfo, C_GetOperationState, C_SetOperationState;
  ulong (*C_Login)(ulong, ulong, const unsigned char*, ulong);
  Fn C_Logout;
  ulong (*C_CreateObject)(ulong, Attribute*, ulong, ulong*);
};
constexpr ulong kSerialSession = 4, kRwSession = 2, kUser = 1;
constexpr ulong kClass = 0, kToken = 1, kLabel = 3, kValue = 0x11, kKeyType = 0x100,
                kSensitive = 0x103, kSign = 0x108, kId = 0x102;
constexpr ulong kSecretKey = 4, kGenericSecret = 0x10;
}  // namespace p11

class SoftHsmToken {
 public:
  static constexpr const char* kLabel = "t";
  static constexpr const char* kPin = "1234";

  // Sets SOFTHSM2_CONF for this process (the module reads it in C_Initialize) and makes token
  // "t" with user PIN 1234.
  SoftHsmToken() {
    std::filesystem::create_directories(dir_.path() / "tokens");
    write_file(conf(),
               "directories.tokendir = " + (dir_.path() / "tokens").string() +
                   "\nobjectstore.backend = file\nlog.level = ERROR\n",
               0600);
    ::setenv("SOFTHSM2_CONF", conf().c_str(), 1);
    run({"softhsm2-util", "--init-token", "--free", "--label", kLabel, "--pin", kPin, "--so-pin",
         "5678"});
  }
  ~SoftHsmToken() { ::unsetenv("SOFTHSM2_CONF"); }
  SoftHsmToken(const SoftHsmToken&) = delete;
  SoftHsmToken& operator=(const SoftHsmToken&) = delete;

  std::filesystem::path conf() const { return dir_.path() / "softhsm2.conf"; }
  std::map<std::string, std::string> env() const { return {{"SOFTHSM2_CONF", conf().string()}}; }
  // A PIN file with mode 0600, for [pkcs11] pin_file.
  std::filesystem::path pin_file() const {
    const auto path = dir_.path() / "pin";
    write_file(path, std::string(kPin) + "\n", 0600);
    return path;
  }

  // A PKCS#8 PEM private key (what TestPki writes) as object `label` with CKA_ID `id_hex`.
  void import_key(const std::filesystem::path& pem, const std::string& label,
                  const std::string& id_hex) {
    run({"softhsm2-util", "--import", pem.string(), "--label", label, "--id", id_hex, "--token",
         kLabel, "--pin", kPin});
  }

  // A CKK_GENERIC_SECRET key usable for CKM_SHA256_HMAC, sensitive (never readable back).
  void import_secret(const std::string& label, const std::vector<unsigned char>& secret) {
    std::unique_ptr<void, int (*)(void*)> dl(::dlopen(kSoftHsmModule.c_str(), RTLD_NOW), ::dlclose);
    if (!dl) throw std::runtime_error("SoftHsmToken: cannot load " + kSoftHsmModule.string());
    auto get_list = reinterpret_cast<p11::ulong (*)(p11::FunctionList**)>(
        ::dlsym(dl.get(), "C_GetFunctionList"));
    p11::FunctionList* fn = nullptr;
    if (get_list == nullptr || get_list(&fn) != 0) throw std::runtime_error("no function list");
    check(fn->C_Initialize(nullptr), "C_Initialize");
    struct Finalize {
      p11::FunctionList* fn;
      ~Finalize() { fn->C_Finalize(nullptr); }
    } finalize{fn};
    std::array<p11::ulong, 16> slots{};
    p11::ulong count = slots.size();
    check(fn->C_GetSlotList(1, slots.data(), &count), "C_GetSlotList");
    for (p11::ulong i = 0; i < count; ++i) {
      std::array<unsigned char, 512> info{};  // CK_TOKEN_INFO is 208 bytes on LP64
      if (fn->C_GetTokenInfo(slots[i], info.data()) != 0) continue;
      if (std::string(reinterpret_cast<char*>(info.data()), 32)
              .rfind(std::string(kLabel) + " ", 0) != 0) {
        continue;
      }
      p11::ulong session = 0;
      check(fn->C_OpenSession(slots[i], p11::kSerialSession | p11::kRwSession, nullptr, nullptr,
                              &session),
            "C_OpenSession");
      check(fn->C_Login(session, p11::kUser, reinterpret_cast<const unsigned char*>(kPin), 4),
            "C_Login");
      p11::ulong key_class = p11::kSecretKey;
      p11::ulong key_type = p11::kGenericSecret;
      unsigned char yes = 1;
      std::string name = label;
      std::vector<unsigned char> value = secret;
      unsigned char id = 0x02;
      std::array<p11::Attribute, 8> attributes{{
          {p11::kClass, &key_class, sizeof key_class},
          {p11::kKeyType, &key_type, sizeof key_type},
          {p11::kToken, &yes, 1},
          {p11::kSign, &yes, 1},
          {p11::kSensitive, &yes, 1},
          {p11::kLabel, name.data(), name.size()},
          {p11::kId, &id, 1},
          {p11::kValue, value.data(), value.size()},
      }};
      p11::ulong object = 0;
      const p11::ulong rv =
          fn->C_CreateObject(session, attributes.data(), attributes.size(), &object);
      fn->C_CloseSession(session);
      check(rv, "C_CreateObject");
      return;
    }
    throw std::runtime_error("SoftHsmToken: token not found");
  }

 private:
  static void check(p11::ulong rv, const char* what) {
    if (rv != 0) {
      throw std::runtime_error(std::string("SoftHsmToken: ") + what +
                               " failed: " + std::to_string(rv));
    }
  }
  void run(std::vector<std::string> argv) const {
    using namespace std::chrono_literals;
    ProcessOptions options;
    options.env = env();
    const auto result = run_command(argv, 30s, options);
    if (result.exit_code != 0) {
      throw std::runtime_error("SoftHsmToken: " + argv[0] + " " + argv[1] +
                               " failed: " + result.out + result.err);
    }
  }

  TempDir dir_{"softhsm"};
};

}  // namespace dpsd::test
