#include "io/pkcs11_signer.hpp"

#include <dlfcn.h>
#include <p11-kit/pkcs11.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace dpsd::io {

namespace {

std::string rv_text(CK_RV rv) {
  switch (rv) {
    case CKR_PIN_INCORRECT:
      return "CKR_PIN_INCORRECT (wrong PIN)";
    case CKR_PIN_LOCKED:
      return "CKR_PIN_LOCKED";
    case CKR_USER_PIN_NOT_INITIALIZED:
      return "CKR_USER_PIN_NOT_INITIALIZED";
    case CKR_KEY_TYPE_INCONSISTENT:
      return "CKR_KEY_TYPE_INCONSISTENT (not a generic secret key)";
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
      return "CKR_KEY_FUNCTION_NOT_PERMITTED (the key lacks CKA_SIGN)";
    case CKR_MECHANISM_INVALID:
      return "CKR_MECHANISM_INVALID (the token has no CKM_SHA256_HMAC)";
    case CKR_DEVICE_REMOVED:
      return "CKR_DEVICE_REMOVED";
    case CKR_TOKEN_NOT_PRESENT:
      return "CKR_TOKEN_NOT_PRESENT";
    default: {
      std::array<char, 24> text{};
      (void)std::snprintf(text.data(), text.size(), "CK_RV 0x%lx", static_cast<unsigned long>(rv));
      return text.data();
    }
  }
}

// Token info fields are fixed-size, blank-padded and not NUL-terminated.
std::string padded(const unsigned char* field, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(field), size);
  const auto end = text.find_last_not_of(' ');
  return end == std::string::npos ? std::string() : text.substr(0, end + 1);
}

struct DlCloser {
  void operator()(void* handle) const { ::dlclose(handle); }
};

// One loaded module with one logged-in session, shared by every copy of the Signer. Teardown
// order is the reverse of setup: close the session, C_Finalize (only if we initialised the
// module: another user in this process, such as the pkcs11 engine, may still need it), dlclose.
class Session {
 public:
  Session() = default;
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session() {
    if (fn_ != nullptr) {
      if (open_) fn_->C_CloseSession(session_);
      if (initialized_) fn_->C_Finalize(nullptr);
    }
  }

  Status open(const core::Pkcs11Uri& uri, const Pkcs11Settings& settings) {
    const std::string module = settings.module.string();
    dl_.reset(::dlopen(module.c_str(), RTLD_NOW | RTLD_LOCAL));
    if (!dl_) {
      const char* why = ::dlerror();
      return Error{"cannot load PKCS#11 module " + module + ": " + (why ? why : "dlopen failed")};
    }
    auto get_list = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(dl_.get(), "C_GetFunctionList"));
    if (get_list == nullptr || get_list(&fn_) != CKR_OK || fn_ == nullptr) {
      fn_ = nullptr;
      return Error{module + " is not a PKCS#11 module (no C_GetFunctionList)"};
    }
    CK_C_INITIALIZE_ARGS args{};
    args.flags = CKF_OS_LOCKING_OK;
    const CK_RV init = fn_->C_Initialize(&args);
    if (init != CKR_OK && init != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      return Error{"PKCS#11 module " + module + ": C_Initialize: " + rv_text(init)};
    }
    initialized_ = init == CKR_OK;

    auto slot = find_slot(uri, module);
    if (!slot) return Error{slot.error()};
    CK_RV rv = fn_->C_OpenSession(*slot, CKF_SERIAL_SESSION, nullptr, nullptr, &session_);
    if (rv != CKR_OK) return Error{"cannot open a session on " + token_ + ": " + rv_text(rv)};
    open_ = true;

    if (login_required_) {
      auto pin = load_pin(settings);
      if (!pin) return Error{pin.error()};
      if (pin->view().empty()) {
        return Error{"token " + token_ + " needs a PIN: set [pkcs11] pin_file or pin_credential"};
      }
      // The PKCS#11 prototype takes a non-const pointer; no module writes through it.
      std::string pin_bytes = pin->view();
      rv = fn_->C_Login(session_, CKU_USER, reinterpret_cast<CK_UTF8CHAR_PTR>(pin_bytes.data()),
                        pin_bytes.size());
      SecretText wipe(std::move(pin_bytes));
      if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        return Error{"cannot log in to token " + token_ + ": " + rv_text(rv)};
      }
    }
    return find_key(uri);
  }

  Expected<core::Bytes> sign(std::string_view message) {
    CK_MECHANISM mechanism{CKM_SHA256_HMAC, nullptr, 0};
    CK_RV rv = fn_->C_SignInit(session_, &mechanism, key_);
    if (rv != CKR_OK) return Error{"PKCS#11 HMAC in token " + token_ + ": " + rv_text(rv)};
    core::Bytes mac(32);
    CK_ULONG length = mac.size();
    std::string data(message);  // C_Sign takes a non-const pointer
    rv = fn_->C_Sign(session_, reinterpret_cast<CK_BYTE_PTR>(data.data()), data.size(), mac.data(),
                     &length);
    if (rv != CKR_OK) return Error{"PKCS#11 HMAC in token " + token_ + ": " + rv_text(rv)};
    mac.resize(length);
    return mac;
  }

 private:
  Expected<CK_SLOT_ID> find_slot(const core::Pkcs11Uri& uri, const std::string& module) {
    CK_ULONG count = 0;
    CK_RV rv = fn_->C_GetSlotList(CK_TRUE, nullptr, &count);
    if (rv != CKR_OK) return Error{"PKCS#11 module " + module + ": C_GetSlotList: " + rv_text(rv)};
    std::vector<CK_SLOT_ID> slots(count);
    rv = fn_->C_GetSlotList(CK_TRUE, slots.data(), &count);
    if (rv != CKR_OK) return Error{"PKCS#11 module " + module + ": C_GetSlotList: " + rv_text(rv)};
    slots.resize(count);
    const auto wanted = [&](const char* name, const std::string& value) {
      const auto it = uri.path.find(name);
      return it == uri.path.end() || it->second == value;
    };
    for (CK_SLOT_ID slot : slots) {
      CK_TOKEN_INFO info{};
      if (fn_->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
      const std::string label = padded(info.label, sizeof info.label);
      if (wanted("token", label) &&
          wanted("manufacturer", padded(info.manufacturerID, sizeof info.manufacturerID)) &&
          wanted("model", padded(info.model, sizeof info.model)) &&
          wanted("serial", padded(info.serialNumber, sizeof info.serialNumber))) {
        token_ = "\"" + label + "\"";
        login_required_ = (info.flags & CKF_LOGIN_REQUIRED) != 0;
        return slot;
      }
    }
    const auto token = uri.path.find("token");
    return Error{
        "no token" + (token == uri.path.end() ? std::string() : " \"" + token->second + "\"") +
        " in PKCS#11 module " + module + " (" + std::to_string(slots.size()) + " tokens present)"};
  }

  Status find_key(const core::Pkcs11Uri& uri) {
    CK_OBJECT_CLASS key_class = CKO_SECRET_KEY;
    std::vector<CK_ATTRIBUTE> match{{CKA_CLASS, &key_class, sizeof key_class}};
    std::string label;
    std::string id;
    std::string what;
    if (auto it = uri.path.find("object"); it != uri.path.end()) {
      label = it->second;
      match.push_back({CKA_LABEL, label.data(), label.size()});
      what = "object \"" + label + "\"";
    }
    if (auto it = uri.path.find("id"); it != uri.path.end()) {
      id = it->second;
      match.push_back({CKA_ID, id.data(), id.size()});
      what += what.empty() ? "the given id" : " with the given id";
    }
    CK_RV rv = fn_->C_FindObjectsInit(session_, match.data(), match.size());
    if (rv != CKR_OK) return Error{"cannot search token " + token_ + ": " + rv_text(rv)};
    std::array<CK_OBJECT_HANDLE, 2> found{};
    CK_ULONG count = 0;
    rv = fn_->C_FindObjects(session_, found.data(), found.size(), &count);
    fn_->C_FindObjectsFinal(session_);
    if (rv != CKR_OK) return Error{"cannot search token " + token_ + ": " + rv_text(rv)};
    if (count == 0) return Error{"no secret key " + what + " in token " + token_};
    // Two matches would make the choice depend on the token's object order.
    if (count > 1) return Error{"more than one secret key " + what + " in token " + token_};
    key_ = found[0];
    return ok_status();
  }

  std::unique_ptr<void, DlCloser> dl_;
  CK_FUNCTION_LIST_PTR fn_ = nullptr;
  bool initialized_ = false;
  bool open_ = false;
  bool login_required_ = false;
  CK_SESSION_HANDLE session_ = 0;
  CK_OBJECT_HANDLE key_ = 0;
  std::string token_;
};

}  // namespace

Expected<core::Signer> make_pkcs11_signer(std::string_view uri, const Pkcs11Settings& settings) {
  auto parsed = core::parse_pkcs11_uri(uri);
  if (!parsed) return Error{parsed.error()};
  auto session = std::make_shared<Session>();
  if (auto status = session->open(*parsed, settings); !status) return Error{status.error()};
  // std::function needs a copyable callable; the copies share the one session.
  return core::Signer([session](std::string_view message) { return session->sign(message); });
}

Status check_pkcs11_key(std::string_view uri, const Pkcs11Settings& settings) {
  auto signer = make_pkcs11_signer(uri, settings);
  if (!signer) return Error{signer.error()};
  auto mac = (*signer)("dpsd check-config");
  if (!mac) return Error{mac.error()};
  return ok_status();
}

}  // namespace dpsd::io
