#include "support/unix_broker.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>

#include "support/files.hpp"
#include "support/wait.hpp"

namespace dpsd::test {
namespace {

bool accepts_connections(const std::filesystem::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  (void)std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

UnixBroker::UnixBroker(bool allow_anonymous) {
  // "user root": mosquitto started as root would otherwise drop to user mosquitto, which could
  // not enter our 0700 temp dir. Port 0 with a path makes a Unix socket listener (mosquitto 2.0).
  write_file(dir_ / "mosquitto.conf",
             "# written by dpsd::test::UnixBroker\npersistence false\nuser root\n"
             "allow_anonymous " +
                 std::string(allow_anonymous ? "true" : "false") + "\nlog_dest file " +
                 (dir_ / "mosquitto.log").string() + "\nlog_type all\nlistener 0 " +
                 socket_path().string() + "\n",
             0600);
  start();
}

UnixBroker::~UnixBroker() {
  stop();
}

void UnixBroker::stop() {
  if (broker_) broker_->stop();
  broker_.reset();
  // mosquitto leaves the socket file behind when killed; the next start must not trip on it.
  std::filesystem::remove(socket_path());
}

void UnixBroker::start() {
  stop();
  broker_ = std::make_unique<Process>(
      std::vector<std::string>{"mosquitto", "-c", (dir_ / "mosquitto.conf").string()});
  const bool up =
      wait_until([&] { return !broker_->running() || accepts_connections(socket_path()); }, 10s);
  if (!up || !broker_->running()) {
    const std::string diag = diagnostics();
    broker_.reset();
    throw std::runtime_error("mosquitto did not listen on " + socket_path().string() +
                             " within 10 s\n" + diag);
  }
}

std::string UnixBroker::diagnostics() const {
  std::string out = "mosquitto stderr:\n" + (broker_ ? broker_->stderr_text() : "") + "\n";
  try {
    out += "mosquitto.log:\n" + read_file(dir_ / "mosquitto.log");
  } catch (const std::exception&) {
    out += "(no mosquitto.log)";
  }
  return out;
}

}  // namespace dpsd::test
