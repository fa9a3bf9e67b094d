#include "e2e/e2e_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "testing/testdata.h"

namespace tokenmill::e2e {
namespace fs = std::filesystem;

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr && *base ? base : "/tmp") + "/tm-e2e-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) != nullptr) path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) fs::remove_all(path_, ec);
}

std::string TempDir::WriteFile(const std::string& name, const std::string& content) const {
  const std::string p = path_ + "/" + name;
  std::ofstream(p, std::ios::binary) << content;
  return p;
}

std::unique_ptr<ServerProcess> ServerProcess::Start(const std::vector<std::string>& args,
                                                    double timeout_s) {
  std::unique_ptr<ServerProcess> s(new ServerProcess());
  s->log_path_ = s->dir_.path() + "/server.log";
  std::vector<std::string> argv = {::tokenmill::testing::TokenmillBinary(), "serve"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto has = [&](const char* flag) {
    return std::find(args.begin(), args.end(), flag) != args.end();
  };
  if (!has("--grpc-port")) argv.insert(argv.end(), {"--grpc-port", "0"});
  if (!has("--http-port")) argv.insert(argv.end(), {"--http-port", "0"});
  // Everything the child needs is prepared before fork(): the test process has threads, so
  // the child may only make async-signal-safe calls.
  std::vector<char*> cargs;
  for (std::string& a : argv) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  const int fd = open(s->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    execv(cargs[0], cargs.data());
    _exit(127);
  }
  close(fd);
  s->pid_ = pid;
  const std::regex line(R"(listening grpc=(\S+) http=(\S+):(\d+))");
  const bool up = PollUntil(
      [&] {
        std::smatch m;
        const std::string log = s->Log();
        if (!std::regex_search(log, m, line)) return !s->running();
        s->grpc_address_ = m[1];
        s->http_host_ = m[2];
        s->http_port_ = std::stoi(m[3]);
        return true;
      },
      timeout_s);
  if (!up || s->http_port_ == 0) {
    ADD_FAILURE() << argv[0] << " serve did not start (" << (up ? "exited" : "timeout")
                  << "; ctest sets TOKENMILL_BINARY to the built binary); log:\n"
                  << s->Log();
    return nullptr;
  }
  return s;
}

ServerProcess::~ServerProcess() {
  if (running()) {
    kill(pid_, SIGKILL);
    WaitExit(10);
  }
}

std::string ServerProcess::Log() const {
  std::ifstream in(log_path_);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void ServerProcess::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

bool ServerProcess::running() {
  if (pid_ <= 0 || exit_code_ >= 0) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  if (r == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return false;
}

int ServerProcess::WaitExit(double timeout_s) {
  PollUntil([&] { return !running(); }, timeout_s);
  return exit_code_;
}

std::unique_ptr<v1::Inference::Stub> MakeStub(const std::string& address) {
  return v1::Inference::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

std::unique_ptr<httplib::Client> MakeHttpClient(const ServerProcess& server) {
  auto c = std::make_unique<httplib::Client>(server.http_host(), server.http_port());
  c->set_read_timeout(60, 0);
  return c;
}

bool PollUntil(const std::function<bool()>& pred, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() > deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

GenerateOutcome RunGenerate(v1::Inference::Stub& stub, const v1::GenerateRequest& request,
                            double timeout_s, const std::string& api_key) {
  GenerateOutcome out;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  if (!api_key.empty()) ctx.AddMetadata("authorization", "Bearer " + api_key);
  auto reader = stub.Generate(&ctx, request);
  v1::GenerateResponse msg;
  while (reader->Read(&msg)) {
    out.text += msg.text();
    out.token_ids.insert(out.token_ids.end(), msg.token_ids().begin(), msg.token_ids().end());
    if (msg.has_final()) {
      out.has_final = true;
      out.final_info = msg.final();
    }
    out.messages.push_back(msg);
  }
  out.status = reader->Finish();
  return out;
}

v1::GetStatsResponse Stats(v1::Inference::Stub& stub, const std::string& api_key) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!api_key.empty()) ctx.AddMetadata("authorization", "Bearer " + api_key);
  v1::GetStatsResponse r;
  const grpc::Status s = stub.GetStats(&ctx, v1::GetStatsRequest(), &r);
  EXPECT_TRUE(s.ok()) << s.error_message();
  return r;
}

bool MakeSelfSignedCert(const TempDir& dir, std::string* cert_path, std::string* key_path,
                        std::string* why) {
  *cert_path = dir.path() + "/cert.pem";
  *key_path = dir.path() + "/key.pem";
  const std::string cmd =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout " +
      *key_path + " -out " + *cert_path + " > " + dir.path() + "/openssl.log 2>&1";
  if (std::system(cmd.c_str()) != 0 || !fs::exists(*cert_path)) {
    *why = "the openssl command is not available or failed";
    return false;
  }
  return true;
}

int ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string RawJsonPost(const std::string& path, const std::string& body,
                        const std::string& api_key) {
  std::string r = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  if (!api_key.empty()) r += "Authorization: Bearer " + api_key + "\r\n";
  r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
       "\r\n\r\n" + body;
  return r;
}

namespace {

// The number after `key` in /proc/PID/status ("VmRSS:\t  1234 kB"), or -1.
int64_t StatusField(pid_t pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) == 0) return std::strtoll(line.c_str() + key.size(), nullptr, 10);
  }
  return -1;
}

bool SendAll(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = send(fd, data, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Closes `fd` with a reset instead of an orderly FIN.
void CloseWithReset(int fd) {
  if (fd < 0) return;
  const linger abort_close{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof(abort_close));
  close(fd);
}

}  // namespace

int64_t ProcessRssBytes(pid_t pid) {
  const int64_t kib = StatusField(pid, "VmRSS:");
  return kib < 0 ? -1 : kib * 1024;
}

int ProcessNumThreads(pid_t pid) { return static_cast<int>(StatusField(pid, "Threads:")); }

std::unique_ptr<SeverableProxy> SeverableProxy::Start(int target_port) {
  std::unique_ptr<SeverableProxy> p(new SeverableProxy());
  p->target_port_ = target_port;
  p->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (p->listen_fd_ < 0 || bind(p->listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      listen(p->listen_fd_, 4) != 0 ||
      getsockname(p->listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      pipe2(p->wake_, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "SeverableProxy: cannot listen on loopback: " << std::strerror(errno);
    if (p->listen_fd_ >= 0) close(p->listen_fd_);
    p->listen_fd_ = -1;
    return nullptr;
  }
  p->port_ = ntohs(addr.sin_port);
  p->thread_ = std::thread([raw = p.get()] { raw->Run(); });
  return p;
}

SeverableProxy::~SeverableProxy() {
  Sever();
  if (thread_.joinable()) thread_.join();
  for (int fd : wake_) {
    if (fd >= 0) close(fd);
  }
}

std::string SeverableProxy::address() const { return "127.0.0.1:" + std::to_string(port_); }

void SeverableProxy::Sever() {
  // The pipe stays readable once written, so a second call changes nothing.
  if (wake_[1] >= 0) (void)!write(wake_[1], "x", 1);
}

void SeverableProxy::Run() {
  pollfd wait[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
  while (poll(wait, 2, -1) < 0 && errno == EINTR) {
  }
  const int client =
      (wait[1].revents & POLLIN) ? -1 : accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
  close(listen_fd_);  // one connection only: a reconnecting client is refused
  const int upstream = client >= 0 ? ConnectLoopback(target_port_) : -1;
  char buf[1 << 14];
  while (client >= 0 && upstream >= 0) {
    pollfd f[3] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(f, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (f[2].revents & POLLIN) break;
    bool open = true;
    for (int i = 0; i < 2 && open; ++i) {
      if ((f[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const ssize_t n = read(f[i].fd, buf, sizeof(buf));
      open = n > 0 && SendAll(f[1 - i].fd, buf, static_cast<size_t>(n));
    }
    if (!open) break;
  }
  CloseWithReset(client);
  CloseWithReset(upstream);
}

}  // namespace tokenmill::e2e
