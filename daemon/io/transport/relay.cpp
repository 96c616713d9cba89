#include "io/transport/relay.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>

#include "core/errno_text.hpp"
#include "io/private_dir.hpp"

namespace dpsd::io::transport {
namespace {

using core::errno_text;

bool would_block(int error) {
  return error == EAGAIN || error == EWOULDBLOCK || error == EINTR;
}

unsigned relay_socket_counter = 0;  // one loop, one thread: no atomics needed

Close relay_socket_error(std::string detail) {
  return Close(CloseReason::SetupFailed, Stage::RelaySocket, std::move(detail));
}

}  // namespace

Relay::Relay(sd_event* event, std::unique_ptr<Stream> top, ClosedHandler on_closed)
    : event_(event),
      top_(std::move(top)),
      on_closed_(std::move(on_closed)),
      listen_watch_(event, [this] { accept_client(); }),
      client_watch_(event, [this] { pump(); }),
      top_watch_(event, [this] { pump(); }) {}

Relay::~Relay() {
  remove_socket_file();
}

std::optional<Close> Relay::take_buffered_input() {
  while (top_->has_buffered_input() && down_.space_size() > 0) {
    char* space = down_.space();
    const IoResult in = top_->read(space, down_.space_size());
    if (in.status != IoResult::Status::Ok) break;
    if (auto status = gate_.feed(std::string_view(space, in.bytes)); !status) {
      return Close(CloseReason::GateRefused, Stage::Relay, status.error());
    }
    down_.produced(in.bytes);
  }
  return std::nullopt;
}

// The socket is bound through the directory's fd: a symlink planted at socket_dir must not
// decide where the socket goes (/proc/self/fd/N/name resolves to the opened directory).
Expected<std::string> Relay::listen(const std::filesystem::path& socket_dir) {
  socket_name_ =
      "mqtt-" + std::to_string(::getpid()) + "-" + std::to_string(++relay_socket_counter) + ".sock";
  socket_path_ = (socket_dir / socket_name_).string();
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof address.sun_path) {
    return Error{Errc::Invalid, "path too long: " + socket_path_};
  }
  auto dir = open_private_dir(socket_dir);
  if (!dir) return dir.failure();
  socket_dir_fd_ = std::move(*dir);
  const std::string bind_path =
      "/proc/self/fd/" + std::to_string(socket_dir_fd_.get()) + "/" + socket_name_;
  if (bind_path.size() >= sizeof address.sun_path) {
    return Error{Errc::Invalid, "path too long: " + bind_path};
  }
  std::memcpy(address.sun_path, bind_path.c_str(), bind_path.size() + 1);

  // A crashed predecessor with a recycled pid may have left the name behind.
  if (::unlinkat(socket_dir_fd_.get(), socket_name_.c_str(), 0) < 0 && errno != ENOENT) {
    return Error{Errc::Io, socket_path_ + ": " + errno_text(errno)};
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return Error{Errc::Io, errno_text(errno)};
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) < 0) {
    return Error{Errc::Io, socket_path_ + ": " + errno_text(errno)};
  }
  socket_file_exists_ = true;
  // A backlog above 1 so a stranger's pending connect cannot crowd out libmosquitto's.
  if (::listen(fd.get(), 8) < 0) return Error{Errc::Io, socket_path_ + ": " + errno_text(errno)};
  listener_ = std::move(fd);
  if (auto status = listen_watch_.watch(listener_.get(), EPOLLIN); !status) {
    return status.failure();
  }
  return socket_path_;
}

void Relay::accept_client() {
  for (;;) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      return finish(relay_socket_error("accept: " + errno_text(errno)));
    }
    // Refused connections are just closed; libmosquitto's may still be queued behind them.
    ucred credentials{};
    socklen_t length = sizeof credentials;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &credentials, &length) < 0 ||
        credentials.pid != ::getpid()) {
      continue;
    }
    client_ = std::move(fd);
    if (auto status = client_watch_.watch(client_.get(), EPOLLIN); !status) {
      return finish(relay_socket_error(status.error()));
    }
    // Exactly one client: stop listening and take the name away at once.
    listen_watch_.stop();
    listener_.reset();
    remove_socket_file();
    if (auto status = top_watch_.watch(top_->fd(), EPOLLIN); !status) {
      return finish(Close(CloseReason::SetupFailed, Stage::Relay, status.error()));
    }
    return pump();
  }
}

// Moves bytes both ways until neither direction can make progress, then sleeps on exactly the
// readiness that would let one continue. The top stream is read while there is room even if
// its socket is not readable, which drains what TLS or WebSocket already hold.
void Relay::pump() {
  if (finished_) return;
  for (bool progress = true; progress;) {
    progress = false;

    if (!client_eof_ && up_.space_size() > 0) {
      char* space = up_.space();
      const ssize_t n = ::recv(client_.get(), space, up_.space_size(), 0);
      if (n > 0) {
        up_.produced(static_cast<std::size_t>(n));
        progress = true;
      } else if (n == 0) {
        client_eof_ = true;
        progress = true;
      } else if (!would_block(errno)) {
        return finish(Close(CloseReason::LocalClose));
      }
    }

    if (!up_.empty() || top_->has_pending_output()) {
      const IoResult out = top_->write(up_.data(), up_.size());
      if (out.status == IoResult::Status::Closed) return finish(top_->close_reason());
      if (out.bytes > 0) {
        up_.consumed(out.bytes);
        progress = true;
      }
    }

    if (!server_closed_ && down_.space_size() > 0) {
      char* space = down_.space();
      const IoResult in = top_->read(space, down_.space_size());
      if (in.status == IoResult::Status::Ok) {
        // A refused packet ends the channel before any of its bytes reach libmosquitto, which
        // would otherwise buffer all of it (see core/mqtt_inbound_gate.hpp).
        if (auto status = gate_.feed(std::string_view(space, in.bytes)); !status) {
          return finish(Close(CloseReason::GateRefused, Stage::Relay, status.error()));
        }
        down_.produced(in.bytes);
        progress = true;
      } else if (in.status == IoResult::Status::Closed) {
        const Close& end = top_->close_reason();
        if (end.reason != CloseReason::PeerClosed &&
            end.reason != CloseReason::PeerClosedWithCode) {
          return finish(end);
        }
        server_closed_ = end;  // deliver what we already have before saying so
        progress = true;
      }
    }

    if (down_ready() > 0) {
      const ssize_t n = ::send(client_.get(), down_.data(), down_ready(), MSG_NOSIGNAL);
      if (n > 0) {
        down_.consumed(static_cast<std::size_t>(n));
        progress = true;
      } else if (n < 0 && !would_block(errno)) {
        return finish(Close(CloseReason::LocalClose));
      }
    }
  }

  // Held-back bytes are the start of a header that will never be finished: not worth waiting.
  if (server_closed_ && down_ready() == 0) return finish(*server_closed_);
  if (client_eof_ && up_.empty() && !top_->has_pending_output()) {
    top_->shutdown();
    return finish(Close(CloseReason::LocalClose));
  }
  update_interest();
}

// A direction only contributes to the wait when it still has work; a drained or stopped one
// must not keep the source enabled or level-triggered epoll would spin.
void Relay::update_interest() {
  const bool reading = !server_closed_ && down_.space_size() > 0;
  const bool writing = !up_.empty() || top_->has_pending_output();
  top_watch_.set_events(top_->wanted_events(reading, writing));

  std::uint32_t client_events = 0;
  if (!client_eof_ && up_.space_size() > 0) client_events |= EPOLLIN;
  if (down_ready() > 0) client_events |= EPOLLOUT;
  client_watch_.set_events(client_events);
}

// By value: `why` may be the top stream's, which the handler destroys.
void Relay::finish(Close why) {
  finished_ = true;
  listen_watch_.stop();
  client_watch_.stop();
  top_watch_.stop();
  ClosedHandler handler = std::move(on_closed_);
  if (handler) handler(why);  // may destroy us: nothing after this line
}

// Through the directory fd it was created in, so a swapped path cannot redirect the unlink.
void Relay::remove_socket_file() {
  if (socket_file_exists_) ::unlinkat(socket_dir_fd_.get(), socket_name_.c_str(), 0);
  socket_file_exists_ = false;
  socket_dir_fd_.reset();
}

}  // namespace dpsd::io::transport
