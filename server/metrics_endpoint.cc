// MetricsEndpoint: a minimal HTTP/1.1 responder for GET /metrics (see the header).
#include "server/metrics_endpoint.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace deltaserve {
namespace {

constexpr size_t kMaxRequestBytes = 16 * 1024;
constexpr int kIoTimeoutSeconds = 5;

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string Response(const std::string& status, const std::string& content_type,
                     const std::string& body, bool head_only) {
  return absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", content_type,
                      "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n",
                      head_only ? std::string() : body);
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(const std::string& host,
                                                                        int port,
                                                                        ServerMetrics* metrics) {
  const std::string address =
      host.find(':') != std::string::npos ? absl::StrCat("[", host, "]:", port)
                                          : absl::StrCat(host, ":", port);
  auto fail = [&address](const std::string& what) {
    return absl::UnavailableError(
        absl::StrCat("--metrics-port: cannot listen on ", address, ": ", what));
  };

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(port);
  const int gai = getaddrinfo(host.empty() ? nullptr : host.c_str(), port_text.c_str(), &hints,
                              &found);
  if (gai != 0) return fail(gai_strerror(gai));
  int fd = -1;
  std::string last_error = "no address";
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 64) != 0) {
      last_error = std::strerror(errno);
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) return fail(last_error);

  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port = bound.ss_family == AF_INET6
                             ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                             : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  auto endpoint = std::unique_ptr<MetricsEndpoint>(new MetricsEndpoint(fd, bound_port, metrics));
  if (pipe2(endpoint->wake_pipe_, O_CLOEXEC) != 0) return fail(std::strerror(errno));
  endpoint->thread_ = std::thread([e = endpoint.get()] { e->Serve(); });
  return endpoint;
}

MetricsEndpoint::MetricsEndpoint(int listen_fd, int port, ServerMetrics* metrics)
    : listen_fd_(listen_fd), port_(port), metrics_(metrics) {}

MetricsEndpoint::~MetricsEndpoint() {
  if (thread_.joinable()) {
    const char byte = 0;
    ssize_t ignored = write(wake_pipe_[1], &byte, 1);
    (void)ignored;
    thread_.join();
  }
  for (int fd : wake_pipe_) {
    if (fd >= 0) close(fd);
  }
  close(listen_fd_);
}

void MetricsEndpoint::Serve() {
  pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_pipe_[0], POLLIN, 0}};
  while (true) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int conn = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    HandleConnection(conn);
    close(conn);
  }
}

void MetricsEndpoint::HandleConnection(int fd) {
  timeval timeout{kIoTimeoutSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));

  std::string request;
  char buf[2048];
  while (request.find("\r\n\r\n") == std::string::npos) {
    if (request.size() > kMaxRequestBytes) {
      WriteAll(fd, Response("431 Request Header Fields Too Large", "text/plain", "", false));
      return;
    }
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // closed or timed out before a full request
    request.append(buf, static_cast<size_t>(n));
  }

  // Request line: METHOD SP target SP version.
  const std::string_view line = std::string_view(request).substr(0, request.find("\r\n"));
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) {
    WriteAll(fd, Response("400 Bad Request", "text/plain", "malformed request line\n", false));
    return;
  }
  const std::string_view method = line.substr(0, sp1);
  std::string_view path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  const bool head = method == "HEAD";
  if (method != "GET" && !head) {
    WriteAll(fd, Response("405 Method Not Allowed", "text/plain", "GET /metrics only\n", false));
    return;
  }
  if (path != "/metrics") {
    WriteAll(fd, Response("404 Not Found", "text/plain", "GET /metrics only\n", head));
    return;
  }
  WriteAll(fd, Response("200 OK", "text/plain; version=0.0.4; charset=utf-8",
                        metrics_->SerializeText(), head));
}

}  // namespace deltaserve
