// `tokenmill serve`: the daemon. Loads the model, starts the engine with its meters, serves
// gRPC and HTTP, and drains on SIGTERM/SIGINT.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/commands.h"
#include "server/logging.h"
#include "server/server_config.h"
#include "server/signals.h"
#include "spdlog/spdlog.h"
#include "tokenmill/api/grpc_server.h"
#include "tokenmill/api/http_server.h"
#include "tokenmill/metrics/energy_meter.h"
#include "tokenmill/metrics/ledger.h"
#include "tokenmill/metrics/serving_metrics.h"

namespace tokenmill {
namespace {

struct ServeFlags {
  std::string config_file;
  v1::ServerConfig overlay;  // what the flags set; overrides the file
  EngineFlags engine;        // bound by AddEngineFlags; copied to the overlay when given
};

// Everything the daemon owns, declared so that destruction runs in the right order
// (servers before the front end, the engine before the meters it writes to).
struct Daemon {
  ModelBundle bundle;
  metrics::MetricRegistry registry;
  std::unique_ptr<metrics::EnergyMeter> meter;
  std::unique_ptr<metrics::ServingMetrics> serving_metrics;
  std::unique_ptr<metrics::LedgerWriter> ledger;
  std::unique_ptr<Engine> engine;
  Authenticator auth;
  std::unique_ptr<TenantLimiter> limiter;
  std::unique_ptr<Frontend> frontend;
  std::unique_ptr<GrpcServer> grpc;
  std::unique_ptr<HttpServer> http;
};

void AddOverlayFlags(CLI::App* cmd, ServeFlags* f) {
  v1::ServerConfig* o = &f->overlay;
  cmd->add_option("--config", f->config_file,
                  "YAML config file (configs/server.yaml documents it)");
  cmd->add_option_function<std::string>(
      "--model,-m", [o](const std::string& v) { o->mutable_model()->set_path(v); },
      "Model: GGUF file, HF directory, or demo[:preset]");
  cmd->add_option_function<std::string>(
      "--tokenizer", [o](const std::string& v) { o->mutable_model()->set_tokenizer(v); },
      "Tokenizer path (default: the model's own)");
  cmd->add_option_function<std::string>(
      "--served-model-name", [o](const std::string& v) { o->mutable_model()->set_served_name(v); },
      "Name clients use for the model (default: file stem or spec)");
  cmd->add_option_function<std::string>(
      "--chat-template", [o](const std::string& v) { o->mutable_model()->set_chat_template(v); },
      "Jinja chat template file (default: the model's own)");
  cmd->add_option_function<std::string>(
      "--host", [o](const std::string& v) { o->mutable_server()->set_host(v); },
      "Listen address (default 127.0.0.1; 0.0.0.0 for every interface)");
  cmd->add_option_function<int>(
      "--grpc-port", [o](const int& v) { o->mutable_server()->set_grpc_port(v); },
      "gRPC port (default 50051; 0: any free port)");
  cmd->add_option_function<int>(
      "--http-port", [o](const int& v) { o->mutable_server()->set_http_port(v); },
      "HTTP port (default 8080; 0: any free port)");
  cmd->add_option_function<double>(
      "--drain-timeout", [o](const double& v) { o->mutable_server()->set_drain_timeout_s(v); },
      "Seconds in-flight requests get to finish after SIGTERM (default 30)");
  cmd->add_option_function<std::string>(
         "--log-format", [o](const std::string& v) { o->mutable_server()->set_log_format(v); },
         "text or json")
      ->check(CLI::IsMember({"text", "json"}));
  cmd->add_option_function<std::string>(
      "--log-level", [o](const std::string& v) { o->mutable_server()->set_log_level(v); },
      "trace, debug, info, warn, error");
  cmd->add_flag_function(
      "--log-prompts", [o](int64_t) { o->mutable_server()->set_log_prompts(true); },
      "Log each request's prompt text (off by default)");
  cmd->add_option_function<std::string>(
      "--ledger-dir", [o](const std::string& v) { o->mutable_metrics()->set_ledger_dir(v); },
      "Append one JSON line per finished request under this directory");
  cmd->add_option_function<std::string>(
         "--energy-meter", [o](const std::string& v) { o->mutable_metrics()->set_energy_meter(v); },
         "auto, nvml, rapl, static or none")
      ->check(CLI::IsMember({"auto", "nvml", "rapl", "static", "none"}));
  cmd->add_option_function<double>(
      "--static-watts", [o](const double& v) { o->mutable_metrics()->set_static_watts(v); },
      "Power for --energy-meter static (figures are labelled estimated)");
  cmd->add_option_function<double>(
      "--price-gpu-hour", [o](const double& v) { o->mutable_cost()->set_price_per_device_hour(v); },
      "Price per GPU-hour (CPU backend: per node-hour)");
  cmd->add_option_function<double>(
      "--price-kwh", [o](const double& v) { o->mutable_cost()->set_price_per_kwh(v); },
      "Price per kWh");
  cmd->add_option_function<double>(
      "--pue", [o](const double& v) { o->mutable_cost()->set_pue(v); },
      "Power usage effectiveness of the site (>= 1)");
  cmd->add_option_function<std::string>(
      "--currency", [o](const std::string& v) { o->mutable_cost()->set_currency(v); },
      "Currency of the prices (default USD)");
  cmd->add_option_function<std::string>(
      "--tls-cert", [o](const std::string& v) { o->mutable_tls()->set_cert_file(v); },
      "PEM certificate: TLS on gRPC and HTTPS");
  cmd->add_option_function<std::string>(
      "--tls-key", [o](const std::string& v) { o->mutable_tls()->set_key_file(v); },
      "PEM private key for --tls-cert");
  AddEngineFlags(cmd, &f->engine);
}

// Engine flags share AddEngineFlags with `generate`; only the ones given override the file.
void OverlayEngineFlags(const CLI::App& cmd, const EngineFlags& e, v1::EngineSection* o) {
  auto given = [&](const char* name) { return cmd.get_option(name)->count() > 0; };
  if (given("--backend")) o->set_backend(e.backend);
  if (given("--threads")) o->set_threads(e.threads);
  if (given("--tensor-parallel")) o->set_tensor_parallel(e.tensor_parallel);
  if (given("--max-num-seqs")) o->set_max_num_seqs(e.max_num_seqs);
  if (given("--max-batched-tokens")) o->set_max_batched_tokens(e.max_batched_tokens);
  if (given("--max-model-len")) o->set_max_model_len(e.max_model_len);
  if (given("--kv-cache-blocks")) o->set_kv_cache_blocks(e.kv_cache_blocks);
  if (given("--kv-cache-mb")) o->set_kv_cache_mb(e.kv_cache_mb);
  if (given("--block-size")) o->set_block_size(e.block_size);
  if (given("--no-prefix-caching")) o->set_prefix_caching(!e.no_prefix_caching);
  if (given("--max-pending-requests")) o->set_max_pending_requests(e.max_pending_requests);
}

absl::StatusOr<ServeOptions> LoadOptions(const ServeFlags& f) {
  v1::ServerConfig config;
  if (!f.config_file.empty()) {
    auto loaded = LoadServerConfigFile(f.config_file);
    if (!loaded.ok()) return loaded.status();
    config = *std::move(loaded);
  }
  config.MergeFrom(f.overlay);
  return ResolveServeOptions(config);
}

absl::Status StartMeters(const ServeOptions& o, Daemon& d, const std::string& model_name) {
  metrics::EnergyMeterOptions eo;
  eo.mode = o.energy_meter;
  eo.gpu_backend = o.engine.backend == "cuda";
  eo.static_watts = o.static_watts;
  auto meter = metrics::CreateEnergyMeter(eo, SystemClock::Get());
  if (!meter.ok()) return meter.status();
  d.meter = *std::move(meter);
  metrics::ServingMetricsOptions so;
  so.model_name = model_name;
  so.energy_source = d.meter->source();
  so.max_tenants = o.max_tenant_labels;
  so.max_model_len = o.engine.max_model_len > 0 ? o.engine.max_model_len
                                                : d.bundle.model->config.max_position_embeddings;
  so.max_num_batched_tokens = o.engine.max_batched_tokens;
  d.serving_metrics =
      std::make_unique<metrics::ServingMetrics>(d.registry, SystemClock::Get(), so, d.meter.get());
  if (!o.ledger_dir.empty()) {
    auto ledger = metrics::LedgerWriter::Open(o.ledger_dir, SystemClock::Get());
    if (!ledger.ok()) return ledger.status();
    d.ledger = *std::move(ledger);
    spdlog::info("ledger: {}", o.ledger_dir);
  }
  return absl::OkStatus();
}

// --chat-template: replaces the model's template; the model's BOS/EOS strings are kept.
absl::Status ApplyChatTemplate(const std::string& path, ModelBundle& bundle) {
  auto source = LoadChatTemplateSource(path);
  if (!source.ok()) return source.status();
  auto parsed = ChatTemplate::Parse(source->source);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("model.chat_template: ", path, ": ", parsed.status().message()));
  }
  if (bundle.chat_template_source.has_value()) {
    if (!source->bos_token) source->bos_token = bundle.chat_template_source->bos_token;
    if (!source->eos_token) source->eos_token = bundle.chat_template_source->eos_token;
  }
  bundle.chat_template = *std::move(parsed);
  bundle.chat_template_source = *std::move(source);
  return absl::OkStatus();
}

absl::Status StartServing(const ServeOptions& o, Daemon& d) {
  const std::string name = o.served_name.empty() ? d.bundle.name : o.served_name;
  if (absl::Status s = StartMeters(o, d, name); !s.ok()) return s;
  EngineAccounting acc{d.meter.get(), d.serving_metrics.get(), d.ledger.get(), o.cost};
  auto engine = BuildEngine(d.bundle, o.engine, acc);
  if (!engine.ok()) return engine.status();
  d.engine = *std::move(engine);
  auto auth = Authenticator::Create(o.auth_enabled, o.api_keys);
  if (!auth.ok()) return auth.status();
  d.auth = *std::move(auth);
  if (!o.tenant_limits.empty()) {
    d.limiter = std::make_unique<TenantLimiter>(o.tenant_limits, SystemClock::Get());
  }
  FrontendOptions fo{name, o.limits, o.log_prompts};
  d.frontend =
      std::make_unique<Frontend>(*d.engine, d.bundle, d.auth, d.limiter.get(), fo, &d.registry);
  const bool tls = !o.tls_cert_file.empty();
  if (o.enable_grpc) {
    GrpcServerOptions go{o.host, o.grpc_port, o.grpc_reflection, "", ""};
    if (tls && o.tls_grpc) go.cert_file = o.tls_cert_file, go.key_file = o.tls_key_file;
    auto grpc = GrpcServer::Start(*d.frontend, go);
    if (!grpc.ok()) return grpc.status();
    d.grpc = *std::move(grpc);
  }
  if (o.enable_http) {
    HttpServerOptions ho;
    ho.host = o.host;
    ho.port = o.http_port;
    ho.num_threads = o.http_threads;
    ho.keep_alive_timeout_s = o.http_keep_alive_timeout_s;
    ho.public_health = o.public_health;
    ho.public_metrics = o.public_metrics;
    if (tls && o.tls_http) ho.cert_file = o.tls_cert_file, ho.key_file = o.tls_key_file;
    auto http = HttpServer::Start(*d.frontend, &d.registry, ho);
    if (!http.ok()) return http.status();
    d.http = *std::move(http);
  }
  return absl::OkStatus();
}

void AnnounceListening(const ServeOptions& o, const Daemon& d) {
  const std::string grpc = d.grpc ? absl::StrCat(o.host, ":", d.grpc->port()) : "off";
  const std::string http = d.http ? absl::StrCat(o.host, ":", d.http->port()) : "off";
  // Tests and outside checks parse this exact line.
  spdlog::info("listening grpc={} http={}", grpc, http);
  spdlog::info("model '{}' (max_model_len {}), auth {}, tls {}", d.frontend->model_name(),
               d.engine->max_seq_len(), o.auth_enabled ? "on" : "off",
               o.tls_cert_file.empty() ? "off" : "on");
  if (d.http) {
    const std::string scheme = d.http->is_tls() ? "https" : "http";
    spdlog::info(
        "try: curl {}://{}/v1/completions -H 'Content-Type: application/json' "
        "-d '{{\"model\": \"{}\", \"prompt\": \"Once upon a time\", \"max_tokens\": 32}}'",
        scheme, http, d.frontend->model_name());
  }
}

// The first signal arrived: stop taking requests, let in-flight ones finish (up to the drain
// timeout), then stop the servers and the engine.
void Drain(const ServeOptions& o, Daemon& d, int signal_number) {
  spdlog::info("received {}: draining ({} in flight, up to {} s); send it again to exit at once",
               strsignal(signal_number), d.frontend->num_active(), o.drain_timeout_s);
  d.frontend->StartDrain();
  if (d.grpc) d.grpc->SetServing(false);
  const bool drained = d.frontend->WaitUntilNoActive(o.drain_timeout_s);
  if (!drained) {
    spdlog::warn("drain timeout: {} requests still running are cut short (UNAVAILABLE)",
                 d.frontend->num_active());
    d.engine->Shutdown();  // ends every pending request, so the servers can stop
  }
  if (d.grpc) d.grpc->Shutdown(drained ? 1.0 : 0.0);
  if (d.http) d.http->Stop();
  d.engine->Shutdown();
  spdlog::info("stopped{}", drained ? "; every in-flight request completed" : "");
}

int RunServe(ServeFlags& f, const CLI::App& cmd) {
  // Before any thread starts, so that every thread inherits the blocked signal mask.
  std::unique_ptr<ShutdownSignals> signals = ShutdownSignals::Install();
  OverlayEngineFlags(cmd, f.engine, f.overlay.mutable_engine());
  auto options = LoadOptions(f);
  if (!options.ok()) {
    spdlog::error("{}", std::string(options.status().message()));
    return 2;
  }
  // Testing only, so a flag and never a config field: it bypasses the config overlay.
  options->engine.inject_faults = f.engine.inject_faults;
  options->engine.bootstrap = f.engine.bootstrap;
  // A lost tensor-parallel worker or a failed engine ends the daemon (no request could run
  // again): it drains as on SIGTERM, then exits non-zero so that a supervisor restarts it.
  auto group_lost = std::make_shared<std::atomic<bool>>(false);
  options->engine.on_fatal = [group_lost](const absl::Status& why) {
    if (group_lost->exchange(true)) return;
    spdlog::critical("{}; shutting down", std::string(why.message()));
    kill(getpid(), SIGTERM);  // the signal watcher thread takes it (signals.h)
  };
  const ServeOptions& o = *options;
  if (absl::Status s = ConfigureLogging(o.log_format, o.log_level); !s.ok()) {
    spdlog::error("{}", std::string(s.message()));
    return 2;
  }
  Daemon d;
  auto bundle = LoadModelBundle(o.model_path, o.tokenizer_path);
  if (!bundle.ok()) {
    spdlog::error("cannot load model '{}': {}", o.model_path, bundle.status().ToString());
    return 2;
  }
  d.bundle = *std::move(bundle);
  WarnIfRandomWeights(d.bundle);
  if (!o.chat_template_path.empty()) {
    if (absl::Status s = ApplyChatTemplate(o.chat_template_path, d.bundle); !s.ok()) {
      spdlog::error("{}", std::string(s.message()));
      return 2;
    }
  }
  if (absl::Status s = StartServing(o, d); !s.ok()) {
    spdlog::error("cannot start: {}", s.ToString());
    return 2;
  }
  AnnounceListening(o, d);
  Drain(o, d, signals->WaitForFirst());
  return group_lost->load() ? 1 : 0;
}

}  // namespace

void AddServeCommand(CLI::App& app, std::function<int()>* action) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "Serve a model over gRPC (tokenmill.v1) and an OpenAI-compatible HTTP API");
  AddOverlayFlags(cmd, f.get());
  cmd->callback([f, action, cmd] { *action = [f, cmd]() -> int { return RunServe(*f, *cmd); }; });
}

}  // namespace tokenmill
