// Helpers for the end-to-end tests: run the real `tokenmill serve` binary on loopback with
// free ports, find its ports in the `listening grpc=HOST:PORT http=HOST:PORT` line, signal it
// and collect its exit code; plus gRPC and HTTP clients for it.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "httplib.h"
#include "tokenmill/v1/service.grpc.pb.h"

namespace tokenmill::e2e {

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  // Writes `content` to path()/name and returns the full path.
  std::string WriteFile(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

class ServerProcess {
 public:
  // Starts `tokenmill serve <args>` (adding --grpc-port 0 --http-port 0 unless `args` has
  // ports) with stderr captured, and waits until it logs its listening line. Returns null
  // (and records a test failure with the log) when it exits or times out first.
  static std::unique_ptr<ServerProcess> Start(const std::vector<std::string>& args,
                                              double timeout_s = 60);
  ~ServerProcess();  // SIGKILL if still running

  pid_t pid() const { return pid_; }
  const std::string& grpc_address() const { return grpc_address_; }  // "127.0.0.1:PORT"
  const std::string& http_host() const { return http_host_; }
  int http_port() const { return http_port_; }
  // Everything the server logged so far.
  std::string Log() const;
  void Signal(int sig);
  // Waits for the process to exit: its exit code, 128 + signal when killed, -1 on timeout.
  int WaitExit(double timeout_s);
  bool running();

 private:
  ServerProcess() = default;
  pid_t pid_ = -1;
  int exit_code_ = -1;
  TempDir dir_;
  std::string log_path_;
  std::string grpc_address_;
  std::string http_host_;
  int http_port_ = 0;
};

std::unique_ptr<v1::Inference::Stub> MakeStub(const std::string& address);
std::unique_ptr<httplib::Client> MakeHttpClient(const ServerProcess& server);

// Polls `pred` every 10 ms until it holds or `timeout_s` passes; returns its last value.
bool PollUntil(const std::function<bool()>& pred, double timeout_s);

// Collected Generate stream.
struct GenerateOutcome {
  grpc::Status status;
  std::vector<v1::GenerateResponse> messages;
  std::string text;  // all samples' text in order (for n == 1: the completion)
  std::vector<int32_t> token_ids;
  bool has_final = false;
  v1::FinalInfo final_info;
};
GenerateOutcome RunGenerate(v1::Inference::Stub& stub, const v1::GenerateRequest& request,
                            double timeout_s = 60, const std::string& api_key = "");

// GetStats with an optional key; fails the test on error.
v1::GetStatsResponse Stats(v1::Inference::Stub& stub, const std::string& api_key = "");

// A valid test certificate and key for "localhost" / 127.0.0.1, made with the `openssl`
// command into `dir`; false (and the reason in *why) when openssl is unavailable.
bool MakeSelfSignedCert(const TempDir& dir, std::string* cert_path, std::string* key_path,
                        std::string* why);

// A connected (blocking) TCP socket to 127.0.0.1:`port`, or -1.
int ConnectLoopback(int port);

// The bytes of an HTTP/1.1 POST of the JSON `body` to `path` (Content-Length set, the
// connection closed after the response), with a bearer `api_key` when not empty: for tests
// that speak HTTP on a raw socket (ConnectLoopback) to hang up at a moment of their choosing.
std::string RawJsonPost(const std::string& path, const std::string& body,
                        const std::string& api_key = "");

// Resident memory (VmRSS, bytes) and thread count of process `pid`, from /proc/PID/status;
// -1 when unreadable.
int64_t ProcessRssBytes(pid_t pid);
int ProcessNumThreads(pid_t pid);

// A TCP relay on loopback that can cut its connection abruptly, as a crashed client or a
// pulled cable looks to the server: it accepts ONE connection on a free port and relays it
// to 127.0.0.1:target_port on a thread of its own; Sever() resets both sides at once (RST,
// SO_LINGER 0). Point a client at address() with a connection of its own (for gRPC, a
// channel with GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, so no other call shares it).
// Thread-safety: Sever() from any thread.
class SeverableProxy {
 public:
  // Null (and a test failure) when it cannot listen.
  static std::unique_ptr<SeverableProxy> Start(int target_port);
  ~SeverableProxy();  // Sever(), then joins the relay thread
  SeverableProxy(const SeverableProxy&) = delete;
  SeverableProxy& operator=(const SeverableProxy&) = delete;

  std::string address() const;  // "127.0.0.1:PORT"
  // Resets the relayed connection (or, before one came, stops listening). Idempotent.
  void Sever();

 private:
  SeverableProxy() = default;
  void Run();

  int target_port_ = 0;
  int port_ = 0;
  int listen_fd_ = -1;      // owned by the relay thread once it runs
  int wake_[2] = {-1, -1};  // a pipe: Sever() writes, the relay thread wakes
  std::thread thread_;
};

}  // namespace tokenmill::e2e
