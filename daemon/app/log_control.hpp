#pragma once
// org.freedesktop.LogControl1 (org.freedesktop.LogControl1(5)) at /org/freedesktop/LogControl1,
// as systemd's own daemons export it, so that `systemctl service-log-level dpsd debug` and
// `systemctl service-log-target dpsd console` change dpsd's logging without a restart (systemctl
// finds dpsd through the unit's BusName=). Properties: LogLevel (rw: "emerg" … "debug"),
// LogTarget (rw: "auto", "journal", "console", "console-prefixed", "null"), SyslogIdentifier
// (ro: "dpsd"). Writing needs the same caller as Reprovision: root or group dpsd.
#include <systemd/sd-bus.h>

#include "core/expected.hpp"

namespace dpsd::app {

// Adds the object to `bus`. Its slot is floating: it lives exactly as long as that connection,
// and the state it shows is io::log's, which outlives every connection.
Status export_log_control(sd_bus* bus);

}  // namespace dpsd::app
