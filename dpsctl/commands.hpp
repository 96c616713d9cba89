#pragma once
// dpsctl's three commands, each run against dpsd on the system bus. They return the exit code
// and throw Failure (bus_errors.hpp) for a failure the caller prints.
#include <string>

namespace dpsctl {

struct Args {
  std::string command;
  bool json = false;
  bool json_pretty = false;  // --json=pretty; --json and --json=short print one line
  bool wait = false;
  long timeout_sec = 120;
};

int cmd_status(const Args& args);
int cmd_wait(const Args& args);
int cmd_reprovision(const Args& args);

}  // namespace dpsctl
