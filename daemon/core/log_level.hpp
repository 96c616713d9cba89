#pragma once
// The one log level vocabulary: the core's Log actions and the journal adapter share it. The
// values are syslog priorities, so the adapter passes them to the journal unchanged.
namespace dpsd::core {

enum class LogLevel { Error = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

}  // namespace dpsd::core
