// `tokenmill bench`: load generator and throughput reporter (docs/bench.md). Resolves the
// flags into a target, a workload and load points, runs warm-up and each point, and writes
// the report directory.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/commands.h"
#include "spdlog/spdlog.h"
#include "tokenmill/api/model_bundle.h"
#include "tokenmill/core/status.h"
#include "tokenmill/loadgen/client_model.h"
#include "tokenmill/loadgen/inproc_target.h"
#include "tokenmill/loadgen/prompt_text.h"
#include "tokenmill/loadgen/report.h"
#include "tokenmill/loadgen/runner.h"
#include "tokenmill/metrics/energy_meter.h"
#include "tokenmill/server/engine_flags.h"

namespace tokenmill {
namespace {

using loadgen::LoadMode;
using loadgen::LoadPoint;
using ojson = nlohmann::ordered_json;

struct BenchFlags {
  std::string target = "inproc";
  std::string model;
  std::string tokenizer;
  std::string served_model_name;
  std::string api_key;
  std::string workload = "fixed:128:128";
  int concurrency = 0;
  double rate = 0;
  std::vector<int> sweep_concurrency;
  std::vector<double> sweep_rate;
  int max_concurrency = 1024;
  int64_t requests = 0;
  double duration_s = 0;
  int64_t warmup = 0;
  uint64_t seed = 0;
  std::string prompt_format = "ids";
  bool no_ignore_eos = false;
  double temperature = 0;
  double slo_ttft_s = 0;
  double slo_tpot_s = 0;
  double timeout_s = 600;
  std::string extra_body;
  std::string energy_meter = "auto";
  double static_watts = 0;
  metrics::CostConfig cost;
  std::string out = "bench-out";
  bool save_requests = false;
  std::string gnuplot = "gnuplot";
  EngineFlags engine;
};

// Everything a run needs once the flags are resolved. Members are declared in
// destruction-safe order: the target refers to the engine, the engine to the bundle.
struct BenchSetup {
  loadgen::TargetAddress address;
  std::unique_ptr<ModelBundle> bundle;                 // inproc
  std::unique_ptr<metrics::EnergyMeter> meter;         // inproc
  std::unique_ptr<Engine> engine;                      // inproc
  std::unique_ptr<loadgen::ClientModel> client_model;  // remote targets
  const Tokenizer* tokenizer = nullptr;
  std::string model_name;
  int max_model_len = 0;
  std::unique_ptr<loadgen::Target> target;
  std::shared_ptr<const loadgen::TokenSource> tokens;
  loadgen::WorkloadSpec workload;
  std::vector<LoadPoint> points;
};

absl::StatusOr<std::vector<LoadPoint>> ResolvePoints(const BenchFlags& f) {
  const int num_modes =
      (f.concurrency > 0) + (f.rate > 0) + !f.sweep_concurrency.empty() + !f.sweep_rate.empty();
  if (num_modes > 1) {
    return absl::InvalidArgumentError(
        "give one of --concurrency, --rate, --sweep-concurrency, --sweep-rate");
  }
  std::vector<LoadPoint> points;
  if (f.rate > 0) points.push_back({LoadMode::kRate, f.rate});
  for (double r : f.sweep_rate) {
    if (!(r > 0)) return absl::InvalidArgumentError("--sweep-rate: every rate must be > 0");
    points.push_back({LoadMode::kRate, r});
  }
  for (int c : f.sweep_concurrency) {
    if (c < 1) return absl::InvalidArgumentError("--sweep-concurrency: values must be >= 1");
    points.push_back({LoadMode::kConcurrency, static_cast<double>(c)});
  }
  if (points.empty())
    points.push_back({LoadMode::kConcurrency, std::max(1.0, 1.0 * f.concurrency)});
  return points;
}

absl::Status SetUpInproc(const BenchFlags& f, BenchSetup& s) {
  TM_ASSIGN_OR_RETURN(ModelBundle bundle, LoadModelBundle(f.model, f.tokenizer));
  s.bundle = std::make_unique<ModelBundle>(std::move(bundle));
  WarnIfRandomWeights(*s.bundle);
  if (s.bundle->tokenizer == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--model ", f.model,
                     " ships no tokenizer; bench builds prompts from one: "
                     "pass --tokenizer"));
  }
  TM_RETURN_IF_ERROR(f.cost.Validate());
  metrics::EnergyMeterOptions eo;
  eo.mode = f.energy_meter;
  eo.gpu_backend = f.engine.backend == "cuda";
  eo.static_watts = f.static_watts;
  TM_ASSIGN_OR_RETURN(s.meter, metrics::CreateEnergyMeter(eo, SystemClock::Get()));
  EngineAccounting accounting;
  accounting.energy_meter = s.meter.get();
  accounting.cost = f.cost;
  TM_ASSIGN_OR_RETURN(s.engine, BuildEngine(*s.bundle, f.engine, accounting));
  s.tokenizer = s.bundle->tokenizer.get();
  s.model_name = s.bundle->name;
  s.max_model_len = s.engine->max_seq_len();
  loadgen::InprocTargetOptions o;
  o.engine = s.engine.get();
  o.bundle = s.bundle.get();
  // Without prices the engine reports cost 0, which would read as free: it is unknown.
  const metrics::PriceConfig& p = f.cost.defaults;
  o.has_prices = p.price_per_device_hour > 0 || p.price_per_kwh > 0;
  s.target = loadgen::MakeInprocTarget(o);
  return absl::OkStatus();
}

absl::Status SetUpRemote(const BenchFlags& f, BenchSetup& s) {
  TM_ASSIGN_OR_RETURN(loadgen::ClientModel cm, loadgen::LoadClientModel(f.model, f.tokenizer));
  s.client_model = std::make_unique<loadgen::ClientModel>(std::move(cm));
  s.tokenizer = s.client_model->tokenizer.get();
  s.model_name = f.served_model_name.empty() ? s.client_model->name : f.served_model_name;
  if (f.engine.max_model_len > 0) {
    s.max_model_len = f.engine.max_model_len;
  } else if (s.client_model->max_model_len.has_value()) {
    s.max_model_len = *s.client_model->max_model_len;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--model ", f.model, ": no config gives its context length; pass --max-model-len"));
  }
  if (s.address.kind == "http") {
    loadgen::HttpTargetOptions o;
    o.address = s.address;
    o.model = s.model_name;
    o.api_key = f.api_key;
    o.timeout_s = f.timeout_s;
    o.send_token_ids = f.prompt_format == "ids";
    if (!f.extra_body.empty()) {
      o.extra_body = nlohmann::json::parse(f.extra_body, nullptr, /*allow_exceptions=*/false);
      if (!o.extra_body.is_object()) {
        return absl::InvalidArgumentError("--extra-body: must be a JSON object");
      }
    }
    s.target = loadgen::MakeHttpTarget(o);
    return absl::OkStatus();
  }
  loadgen::GrpcTargetOptions o;
  o.address = s.address;
  o.model = f.served_model_name;  // "": whatever the server serves
  o.api_key = f.api_key;
  o.timeout_s = f.timeout_s;
  o.send_token_ids = f.prompt_format == "ids";
  s.target = loadgen::MakeGrpcTarget(o);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BenchSetup>> SetUp(const BenchFlags& f) {
  auto s = std::make_unique<BenchSetup>();
  TM_ASSIGN_OR_RETURN(s->address, loadgen::ParseTargetAddress(f.target));
  TM_ASSIGN_OR_RETURN(s->workload, loadgen::ParseWorkloadSpec(f.workload));
  TM_ASSIGN_OR_RETURN(s->points, ResolvePoints(f));
  if (f.requests <= 0 && f.duration_s <= 0) {
    return absl::InvalidArgumentError("give --requests N and/or --duration S");
  }
  if (s->address.kind == "inproc") {
    TM_RETURN_IF_ERROR(SetUpInproc(f, *s));
  } else {
    TM_RETURN_IF_ERROR(SetUpRemote(f, *s));
  }
  TM_ASSIGN_OR_RETURN(loadgen::TokenSource tokens, loadgen::MakeTokenSource(*s->tokenizer));
  s->tokens = std::make_shared<const loadgen::TokenSource>(std::move(tokens));
  return s;
}

// Per-request sampling seed: a function of the run seed and the request's place.
uint64_t RequestSeed(uint64_t seed, int64_t session, int turn) {
  return seed * 0x9e3779b97f4a7c15ULL ^ (static_cast<uint64_t>(session) << 8) ^
         static_cast<uint64_t>(turn);
}

loadgen::RequestBuilder MakeBuilder(const BenchFlags& f, const BenchSetup& s,
                                    const std::string& id_prefix) {
  const bool text = f.prompt_format == "text" && !s.target->accepts_token_ids();
  return [&f, &s, text, id_prefix](const loadgen::Session& session,
                                   int turn) -> absl::StatusOr<loadgen::TargetRequest> {
    loadgen::TargetRequest r;
    r.id = absl::StrCat(id_prefix, "-", session.index, "-", turn);
    r.prompt_ids = session.PromptIds(turn);
    r.max_tokens = session.turns[turn].max_tokens;
    r.ignore_eos = !f.no_ignore_eos;
    r.temperature = f.temperature;
    r.seed = RequestSeed(f.seed, session.index, turn);
    if (text) {
      TM_ASSIGN_OR_RETURN(r.prompt_text, loadgen::PromptTextOfLength(*s.tokenizer, *s.tokens,
                                                                     r.prompt_ids, r.seed));
    }
    return r;
  };
}

ojson ConfigJson(const BenchFlags& f, const BenchSetup& s) {
  ojson c;
  c["target"] = f.target;
  c["target_kind"] = s.address.kind;
  c["model"] = f.model;
  c["served_model_name"] = s.model_name;
  c["tokenizer"] = f.tokenizer.empty() ? ojson(nullptr) : ojson(f.tokenizer);
  c["workload"] = f.workload;
  c["workload_params"] = loadgen::WorkloadSpecJson(s.workload);
  ojson values = ojson::array();
  for (const LoadPoint& p : s.points) values.push_back(p.value);
  c["load"] = {{"mode", s.points[0].mode == LoadMode::kRate ? "rate" : "concurrency"},
               {"values", values},
               {"max_concurrency", f.max_concurrency}};
  c["requests"] = f.requests > 0 ? ojson(f.requests) : ojson(nullptr);
  c["duration_s"] = f.duration_s > 0 ? ojson(f.duration_s) : ojson(nullptr);
  c["warmup"] = f.warmup;
  c["seed"] = f.seed;
  c["prompt_format"] = f.prompt_format;
  c["ignore_eos"] = !f.no_ignore_eos;
  c["temperature"] = f.temperature;
  c["slo"] = {{"ttft_s", f.slo_ttft_s > 0 ? ojson(f.slo_ttft_s) : ojson(nullptr)},
              {"tpot_s", f.slo_tpot_s > 0 ? ojson(f.slo_tpot_s) : ojson(nullptr)}};
  c["max_model_len"] = s.max_model_len;
  if (s.engine != nullptr) {
    const EngineFlags& e = f.engine;
    c["engine"] = {{"backend", e.backend},
                   {"threads", e.threads},
                   {"tensor_parallel", e.tensor_parallel},
                   {"max_num_seqs", e.max_num_seqs},
                   {"max_batched_tokens", e.max_batched_tokens},
                   {"kv_cache_mb", e.kv_cache_mb},
                   {"kv_cache_blocks", e.kv_cache_blocks},
                   {"block_size", e.block_size},
                   {"prefix_caching", !e.no_prefix_caching},
                   {"random_weights", s.bundle->model->config.is_random_weights},
                   {"energy_meter", s.meter->Describe()}};
    const metrics::PriceConfig& p = f.cost.defaults;
    c["prices"] = {{"currency", f.cost.currency},
                   {"price_per_device_hour", p.price_per_device_hour},
                   {"price_per_kwh", p.price_per_kwh},
                   {"pue", p.pue}};
  }
  return c;
}

// Warm-up: requests from another seed (so they warm the server, not its prefix cache for
// the measured prompts), closed loop at the first point's concurrency.
absl::Status RunWarmup(const BenchFlags& f, const BenchSetup& s, loadgen::BenchReport& report,
                       loadgen::Progress& progress) {
  if (f.warmup <= 0) return absl::OkStatus();
  TM_ASSIGN_OR_RETURN(loadgen::WorkloadGenerator gen,
                      loadgen::WorkloadGenerator::Create(
                          s.workload, s.tokens, f.seed ^ 0x5741524d55505f31ULL, s.max_model_len));
  loadgen::RunOptions o;
  const LoadPoint& first = s.points[0];
  o.load = {LoadMode::kConcurrency, first.mode == LoadMode::kConcurrency
                                        ? first.value
                                        : std::min(4.0, std::ceil(first.value))};
  o.load.value = std::min<double>(o.load.value, f.warmup);
  o.num_requests = f.warmup;
  TM_ASSIGN_OR_RETURN(
      loadgen::RunResult r,
      loadgen::RunLoad(*s.target, gen, MakeBuilder(f, s, "warmup"), o, &progress, "warm-up"));
  report.warmup_requests = static_cast<int64_t>(r.samples.size());
  for (const loadgen::RequestSample& x : r.samples) {
    if (!x.result.ok()) {
      ++report.warmup_errors;
      spdlog::warn("warm-up request failed: {}: {}", x.result.error_code, x.result.error_message);
    }
  }
  return absl::OkStatus();
}

// --save-requests: one JSON line per measured request, appended point after point.
absl::Status AppendRequests(const std::string& dir, int point, const loadgen::RunResult& r) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string path = dir + "/requests.jsonl";
  std::ofstream file(path, point == 0 ? std::ios::trunc : std::ios::app);
  for (const loadgen::RequestSample& x : r.samples) {
    file << loadgen::RequestSampleJson(point, x, r.start_s).dump() << "\n";
  }
  file.close();
  if (!file) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::StatusOr<loadgen::PointReport> RunPoint(const BenchFlags& f, const BenchSetup& s, int i,
                                              loadgen::Progress& progress) {
  // Each point draws its own prompts, so a later point never hits the prefix cache on an
  // earlier point's prompts.
  TM_ASSIGN_OR_RETURN(
      loadgen::WorkloadGenerator gen,
      loadgen::WorkloadGenerator::Create(s.workload, s.tokens, f.seed + i, s.max_model_len));
  loadgen::RunOptions o;
  o.load = s.points[i];
  o.num_requests = f.requests;
  o.duration_s = f.duration_s;
  o.max_concurrency = f.max_concurrency;
  o.arrival_seed = f.seed + i;
  TM_ASSIGN_OR_RETURN(loadgen::RunResult r,
                      loadgen::RunLoad(*s.target, gen, MakeBuilder(f, s, absl::StrCat("p", i)), o,
                                       &progress, loadgen::LoadPointName(o.load)));
  loadgen::Slo slo;
  if (f.slo_ttft_s > 0) slo.ttft_s = f.slo_ttft_s;
  if (f.slo_tpot_s > 0) slo.tpot_s = f.slo_tpot_s;
  loadgen::PointReport p;
  p.load = o.load;
  p.metrics = loadgen::ComputePointMetrics(r.samples, slo);
  p.num_sessions = r.num_sessions;
  p.num_truncated_sessions = r.num_truncated_sessions;
  if (f.save_requests) TM_RETURN_IF_ERROR(AppendRequests(f.out, i, r));
  for (const loadgen::RequestSample& x : r.samples) {
    if (!x.result.ok()) {
      spdlog::debug("request {}-{} failed: {}: {}", x.session, x.turn, x.result.error_code,
                    x.result.error_message);
    }
  }
  return p;
}

void LogPoint(const loadgen::PointReport& p) {
  const loadgen::PointMetrics& m = p.metrics;
  spdlog::info(
      "{}: {} ok, {} errors, {:.2f} req/s, {:.1f} output tok/s, TTFT p50 {:.1f} ms, "
      "TPOT p50 {:.2f} ms",
      loadgen::LoadPointName(p.load), m.num_completed, m.num_errors, m.request_throughput_req_s,
      m.output_throughput_tok_s, m.ttft_s.p50.value_or(0) * 1e3, m.tpot_s.p50.value_or(0) * 1e3);
}

int RunBench(const BenchFlags& f) {
  auto setup = SetUp(f);
  if (!setup.ok()) {
    spdlog::error("{}", setup.status().ToString());
    return 2;
  }
  const BenchSetup& s = **setup;
  loadgen::BenchReport report;
  report.seed = f.seed;
  report.config = ConfigJson(f, s);
  report.commit = loadgen::DetectCommit();
  report.machine = loadgen::DetectMachine();
  report.date = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
  loadgen::Progress progress = loadgen::Progress::ForStderr();
  if (absl::Status st = RunWarmup(f, s, report, progress); !st.ok()) {
    spdlog::error("warm-up: {}", st.ToString());
    return 2;
  }
  int64_t completed = 0;
  for (int i = 0; i < static_cast<int>(s.points.size()); ++i) {
    auto point = RunPoint(f, s, i, progress);
    if (!point.ok()) {
      spdlog::error("{}: {}", loadgen::LoadPointName(s.points[i]), point.status().ToString());
      return 2;
    }
    LogPoint(*point);
    completed += point->metrics.num_completed;
    report.points.push_back(*std::move(point));
  }
  auto written = loadgen::WriteReport(report, f.out, f.gnuplot);
  if (!written.ok()) {
    spdlog::error("{}", written.status().ToString());
    return 2;
  }
  for (const std::string& w : written->warnings) spdlog::warn("{}", w);
  std::cout << loadgen::ReportMarkdown(report, {}) << std::flush;
  spdlog::info("report: {}/report.json, {}/report.md", f.out, f.out);
  return completed > 0 ? 0 : 1;
}

void AddBenchFlags(CLI::App* cmd, BenchFlags* f) {
  cmd->add_option("--target", f->target,
                  "inproc, http://HOST:PORT (OpenAI-compatible) or grpc://HOST:PORT")
      ->capture_default_str();
  cmd->add_option("--model,-m", f->model,
                  "Model (GGUF file, HF directory, demo[:preset]); remote targets load only its "
                  "tokenizer and context length")
      ->required();
  cmd->add_option("--tokenizer", f->tokenizer, "Tokenizer path (default: the model's own)");
  cmd->add_option("--served-model-name", f->served_model_name,
                  "The request's \"model\" field (default: the model's file or directory name)");
  cmd->add_option("--api-key", f->api_key, "Bearer token for HTTP targets");
  cmd->add_option("--workload", f->workload,
                  "fixed:IN:OUT, random:A-B:C-D, chat[:k=v,...], agentic[:k=v,...]")
      ->capture_default_str();
  cmd->add_option("--concurrency,-c", f->concurrency, "Closed loop: sessions in flight");
  cmd->add_option("--rate,-r", f->rate, "Poisson arrivals: requests (sessions) per second");
  cmd->add_option("--sweep-concurrency", f->sweep_concurrency, "Concurrencies, e.g. 1,4,16")
      ->delimiter(',');
  cmd->add_option("--sweep-rate", f->sweep_rate, "Rates, e.g. 1,2,4")->delimiter(',');
  cmd->add_option("--max-concurrency", f->max_concurrency,
                  "Rate mode: most requests in flight (client threads)")
      ->capture_default_str();
  cmd->add_option("--requests,-n", f->requests, "Measured requests per load point");
  cmd->add_option("--duration", f->duration_s, "Seconds of issuing requests per load point");
  cmd->add_option("--warmup", f->warmup, "Warm-up requests before measuring (excluded)")
      ->capture_default_str();
  cmd->add_option("--seed", f->seed, "Workload and arrival seed")->capture_default_str();
  cmd->add_option("--prompt-format", f->prompt_format,
                  "ids (token-id prompts) or text (re-tokenizes to the exact length)")
      ->check(CLI::IsMember({"ids", "text"}))
      ->capture_default_str();
  cmd->add_flag("--no-ignore-eos", f->no_ignore_eos,
                "Let the model stop at EOS (output lengths are then not exact)");
  cmd->add_option("--temperature", f->temperature, "Sampling temperature")->capture_default_str();
  cmd->add_option("--slo-ttft", f->slo_ttft_s, "Goodput SLO: time to first token, seconds");
  cmd->add_option("--slo-tpot", f->slo_tpot_s, "Goodput SLO: time per output token, seconds");
  cmd->add_option("--timeout", f->timeout_s, "Per-request read timeout (HTTP), seconds")
      ->capture_default_str();
  cmd->add_option("--extra-body", f->extra_body,
                  "HTTP: JSON object merged into every request, e.g. '{\"min_tokens\": 128}'");
  cmd->add_option("--energy-meter", f->energy_meter, "inproc: auto, nvml, rapl, static or none")
      ->check(CLI::IsMember({"auto", "nvml", "rapl", "static", "none"}))
      ->capture_default_str();
  cmd->add_option("--static-watts", f->static_watts,
                  "inproc: power for --energy-meter static (figures labelled estimated)");
  cmd->add_option("--price-gpu-hour", f->cost.defaults.price_per_device_hour,
                  "inproc: price per GPU-hour (CPU backend: per node-hour)");
  cmd->add_option("--price-kwh", f->cost.defaults.price_per_kwh, "inproc: price per kWh");
  cmd->add_option("--pue", f->cost.defaults.pue, "inproc: power usage effectiveness (>= 1)");
  cmd->add_option("--currency", f->cost.currency, "inproc: currency of the prices")
      ->capture_default_str();
  cmd->add_option("--out,-o", f->out, "Report directory")->capture_default_str();
  cmd->add_flag("--save-requests", f->save_requests,
                "Also write every measured request's timings to OUT/requests.jsonl");
  cmd->add_option("--gnuplot", f->gnuplot, "gnuplot binary for the PNG plots")
      ->capture_default_str();
  AddEngineFlags(cmd, &f->engine);
}

}  // namespace

void AddBenchCommand(CLI::App& app, std::function<int()>* action) {
  auto f = std::make_shared<BenchFlags>();
  CLI::App* cmd = app.add_subcommand(
      "bench", "Load generator and throughput report (in-process engine, HTTP or gRPC server)");
  AddBenchFlags(cmd, f.get());
  cmd->callback([f, action] { *action = [f]() { return RunBench(*f); }; });
}

}  // namespace tokenmill
