// A minimal tokenmill gRPC client: streams one completion to stdout, then prints the
// request's figures (usage, timings, energy, cost).
//
//   tokenmill serve --model demo &
//   tokenmill_client --target 127.0.0.1:50051 --prompt "Once upon a time" --max-tokens 32
//
// Options: --target HOST:PORT, --prompt TEXT, --max-tokens N, --temperature T, --api-key KEY,
// --timeout SECONDS (the request's deadline). Exit status: 0 on success, 1 on an RPC error
// (its code and message on stderr), 2 on bad options.
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string>

#include "grpcpp/grpcpp.h"
#include "tokenmill/v1/service.grpc.pb.h"

namespace {

struct Options {
  std::string target = "127.0.0.1:50051";
  std::string prompt = "Once upon a time";
  int max_tokens = 32;
  float temperature = 0.0f;
  std::string api_key;
  double timeout_s = 60;
};

bool ParseOptions(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) return false;
    const std::string value = argv[++i];
    if (flag == "--target")
      o->target = value;
    else if (flag == "--prompt")
      o->prompt = value;
    else if (flag == "--max-tokens")
      o->max_tokens = std::atoi(value.c_str());
    else if (flag == "--temperature")
      o->temperature = std::strtof(value.c_str(), nullptr);
    else if (flag == "--api-key")
      o->api_key = value;
    else if (flag == "--timeout")
      o->timeout_s = std::strtod(value.c_str(), nullptr);
    else
      return false;
  }
  return true;
}

const char* FinishName(tokenmill::v1::FinishReason r) {
  return tokenmill::v1::FinishReason_Name(r).c_str() + sizeof("FINISH_REASON_") - 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseOptions(argc, argv, &o)) {
    std::cerr << "usage: tokenmill_client [--target HOST:PORT] [--prompt TEXT] [--max-tokens N]"
                 " [--temperature T] [--api-key KEY] [--timeout S]\n";
    return 2;
  }
  auto stub = tokenmill::v1::Inference::NewStub(
      grpc::CreateChannel(o.target, grpc::InsecureChannelCredentials()));

  tokenmill::v1::GenerateRequest request;
  request.set_text(o.prompt);
  request.set_max_tokens(o.max_tokens);
  request.mutable_sampling()->set_temperature(o.temperature);

  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
  if (!o.api_key.empty()) context.AddMetadata("authorization", "Bearer " + o.api_key);

  auto stream = stub->Generate(&context, request);
  tokenmill::v1::GenerateResponse message;
  tokenmill::v1::FinalInfo final_info;
  while (stream->Read(&message)) {
    std::cout << message.text() << std::flush;
    if (message.has_final()) final_info = message.final();
  }
  const grpc::Status status = stream->Finish();
  std::cout << "\n";
  if (!status.ok()) {
    std::cerr << "error " << status.error_code() << ": " << status.error_message() << "\n";
    return 1;
  }
  const auto& u = final_info.usage();
  const auto& t = final_info.timings();
  const auto& e = final_info.energy();
  std::cout << "--- finish: " << FinishName(final_info.finish_reasons(0)) << "; tokens: prompt "
            << u.prompt_tokens() << " (cached " << u.cached_tokens() << "), generated "
            << u.generated_tokens() << "; ttft " << t.ttft_s() << " s, e2e " << t.e2e_s()
            << " s; energy: ";
  if (e.has_joules()) {
    std::cout << e.joules() << " J (" << e.energy_source() << ")";
  } else {
    std::cout << "unmeasured";
  }
  std::cout << "; cost " << final_info.cost().cost() << " " << final_info.cost().currency() << "\n";
  return 0;
}
