// The gRPC target: tokenmill.v1.Inference/Generate, server-streaming, on a few shared
// channels (HTTP/2 multiplexes the calls in flight; several connections keep one
// connection's stream limit and framing thread from becoming the bottleneck).
#include <atomic>
#include <chrono>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "tokenmill/loadgen/target.h"
#include "tokenmill/v1/service.grpc.pb.h"

namespace tokenmill::loadgen {
namespace {

constexpr int kNumChannels = 4;

const char* FinishReasonName(v1::FinishReason r) {
  switch (r) {
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_LENGTH:
    case v1::FINISH_REASON_CONTEXT_LENGTH:
      return "length";
    case v1::FINISH_REASON_CANCELLED:
      return "cancelled";
    case v1::FINISH_REASON_DEADLINE:
      return "deadline";
    case v1::FINISH_REASON_ERROR:
      return "error";
    default:
      return "";
  }
}

// "RESOURCE_EXHAUSTED" style names, lower-cased, as the HTTP API and inproc target report.
std::string CodeName(grpc::StatusCode code) {
  return absl::AsciiStrToLower(absl::StatusCodeToString(static_cast<absl::StatusCode>(code)));
}

class GrpcTarget final : public Target {
 public:
  explicit GrpcTarget(GrpcTargetOptions options) : options_(std::move(options)) {
    const TargetAddress& a = options_.address;
    const bool ipv6 = a.host.find(':') != std::string::npos;
    const std::string endpoint =
        absl::StrCat(ipv6 ? "[" : "", a.host, ipv6 ? "]" : "", ":", a.port);
    for (int i = 0; i < kNumChannels; ++i) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection per channel
      args.SetInt("tokenmill.bench.channel", i);
      args.SetMaxReceiveMessageSize(-1);
      stubs_.push_back(v1::Inference::NewStub(
          grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args)));
    }
  }

  std::string kind() const override { return "grpc"; }
  bool accepts_token_ids() const override { return options_.send_token_ids; }

  RequestResult Send(const TargetRequest& request) override {
    const Clock* clock = options_.clock;
    RequestResult result;
    v1::GenerateRequest req = MakeRequest(request);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::microseconds(static_cast<int64_t>(options_.timeout_s * 1e6)));
    if (!options_.api_key.empty()) {
      ctx.AddMetadata("authorization", absl::StrCat("Bearer ", options_.api_key));
    }
    v1::Inference::Stub& stub = *stubs_[next_stub_.fetch_add(1) % stubs_.size()];
    result.send_s = clock->NowSeconds();
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = stub.Generate(&ctx, req);
    v1::GenerateResponse msg;
    int64_t num_ids = 0;
    bool saw_final = false;
    while (reader->Read(&msg)) {
      const double now_s = clock->NowSeconds();
      if (msg.token_ids_size() > 0 || !msg.text().empty()) {
        if (!result.first_token_s.has_value()) result.first_token_s = now_s;
        result.chunk_times_s.push_back(now_s);
        num_ids += msg.token_ids_size();
      }
      if (msg.finish_reason() != v1::FINISH_REASON_UNSPECIFIED && msg.index() == 0) {
        result.finish_reason = FinishReasonName(msg.finish_reason());
      }
      if (msg.has_final()) {
        saw_final = true;
        ReadFinal(msg.final(), &result);
      }
    }
    const grpc::Status status = reader->Finish();
    result.end_s = clock->NowSeconds();
    if (!result.output_tokens_from_usage) result.output_tokens = num_ids;
    if (!status.ok()) {
      result.error_code = CodeName(status.error_code());
      result.error_message = status.error_message();
    } else if (!saw_final) {
      result.error_code = "protocol";
      result.error_message = "stream ended without its final message";
    }
    return result;
  }

 private:
  v1::GenerateRequest MakeRequest(const TargetRequest& r) const {
    v1::GenerateRequest req;
    req.set_model(options_.model);
    req.set_request_id(r.id);
    if (options_.send_token_ids || !r.prompt_text.has_value()) {
      req.mutable_token_ids()->mutable_ids()->Add(r.prompt_ids.begin(), r.prompt_ids.end());
    } else {
      req.set_text(*r.prompt_text);
    }
    req.set_max_tokens(r.max_tokens);
    req.set_ignore_eos(r.ignore_eos);
    req.set_seed(r.seed);
    req.mutable_sampling()->set_temperature(static_cast<float>(r.temperature));
    return req;
  }

  static void ReadFinal(const v1::FinalInfo& f, RequestResult* r) {
    r->prompt_tokens = f.usage().prompt_tokens();
    r->cached_tokens = f.usage().cached_tokens();
    r->output_tokens = f.usage().generated_tokens();
    r->output_tokens_from_usage = true;
    if (f.energy().has_joules()) r->joules = f.energy().joules();
    r->energy_source = f.energy().energy_source();
    if (f.has_cost()) {
      r->cost = f.cost().cost();
      r->currency = f.cost().currency();
    }
  }

  const GrpcTargetOptions options_;
  std::vector<std::unique_ptr<v1::Inference::Stub>> stubs_;
  std::atomic<uint64_t> next_stub_{0};
};

}  // namespace

std::unique_ptr<Target> MakeGrpcTarget(const GrpcTargetOptions& options) {
  return std::make_unique<GrpcTarget>(options);
}

}  // namespace tokenmill::loadgen
