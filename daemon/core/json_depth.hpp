#pragma once
// A validating SAX pass over JSON from outside (DPS replies, payload_file) before any DOM is
// built: nlohmann's DOM parser and dump() recurse once per nesting level, so 300,000 nested
// arrays would overflow the stack. The pass stops at max_depth, and also learns where a syntax
// error is (the non-throwing DOM parse only says "discarded").
#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace dpsd::core {

class JsonDepthCheck : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit JsonDepthCheck(std::size_t max_depth) : max_depth_(max_depth) {}

  bool null() override { return true; }
  bool boolean(bool /*val*/) override { return true; }
  bool number_integer(number_integer_t /*val*/) override { return true; }
  bool number_unsigned(number_unsigned_t /*val*/) override { return true; }
  bool number_float(number_float_t /*val*/, const string_t& /*s*/) override { return true; }
  bool string(string_t& /*val*/) override { return true; }
  bool binary(binary_t& /*val*/) override { return true; }
  bool start_object(std::size_t /*elements*/) override { return enter(); }
  bool key(string_t& /*val*/) override { return true; }
  bool end_object() override { return leave(); }
  bool start_array(std::size_t /*elements*/) override { return enter(); }
  bool end_array() override { return leave(); }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& ex) override {
    error_position_ = position;
    error_text_ = ex.what();
    return false;
  }

  bool too_deep() const { return too_deep_; }
  // Where the syntax error is (bytes from the start) and nlohmann's own words for it.
  std::optional<std::size_t> error_position() const { return error_position_; }
  const std::string& error_text() const { return error_text_; }

 private:
  bool enter() {
    if (++depth_ > max_depth_) {
      too_deep_ = true;
      return false;
    }
    return true;
  }
  bool leave() {
    --depth_;
    return true;
  }

  std::size_t max_depth_;
  std::size_t depth_ = 0;
  bool too_deep_ = false;
  std::optional<std::size_t> error_position_;
  std::string error_text_;
};

}  // namespace dpsd::core
