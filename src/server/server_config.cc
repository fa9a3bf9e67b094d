#include "server/server_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "server/yaml_proto.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

absl::Status OutOfRange(absl::string_view path, absl::string_view rule, double got) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": must be ", rule, ", got ", got));
}

absl::Status CheckMin(absl::string_view path, double v, double min) {
  return v >= min ? absl::OkStatus() : OutOfRange(path, absl::StrCat(">= ", min), v);
}

absl::Status CheckPort(absl::string_view path, int port) {
  return port >= 0 && port <= 65535 ? absl::OkStatus() : OutOfRange(path, "in [0, 65535]", port);
}

absl::Status CheckOneOf(absl::string_view path, const std::string& v,
                        std::initializer_list<const char*> allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (v == a) return absl::OkStatus();
    absl::StrAppend(&list, list.empty() ? "" : ", ", a);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": must be one of ", list, ", got '", v, "'"));
}

absl::Status ResolveServer(const v1::ServerSection& s, ServeOptions& o) {
  if (s.has_host()) o.host = s.host();
  if (s.has_grpc_port()) o.grpc_port = s.grpc_port();
  if (s.has_http_port()) o.http_port = s.http_port();
  if (s.has_enable_grpc()) o.enable_grpc = s.enable_grpc();
  if (s.has_enable_http()) o.enable_http = s.enable_http();
  if (s.has_http_threads()) o.http_threads = s.http_threads();
  if (s.has_drain_timeout_s()) o.drain_timeout_s = s.drain_timeout_s();
  if (s.has_grpc_reflection()) o.grpc_reflection = s.grpc_reflection();
  if (s.has_log_format()) o.log_format = s.log_format();
  if (s.has_log_level()) o.log_level = s.log_level();
  if (s.has_log_prompts()) o.log_prompts = s.log_prompts();
  if (s.has_http_keep_alive_timeout_s())
    o.http_keep_alive_timeout_s = s.http_keep_alive_timeout_s();
  if (o.host.empty()) return absl::InvalidArgumentError("server.host: must not be empty");
  TM_RETURN_IF_ERROR(CheckPort("server.grpc_port", o.grpc_port));
  TM_RETURN_IF_ERROR(CheckPort("server.http_port", o.http_port));
  if (!o.enable_grpc && !o.enable_http) {
    return absl::InvalidArgumentError("server: enable_grpc and enable_http are both false");
  }
  TM_RETURN_IF_ERROR(CheckMin("server.http_threads", o.http_threads, 1));
  TM_RETURN_IF_ERROR(CheckMin("server.drain_timeout_s", o.drain_timeout_s, 0));
  TM_RETURN_IF_ERROR(CheckMin("server.http_keep_alive_timeout_s", o.http_keep_alive_timeout_s, 1));
  TM_RETURN_IF_ERROR(CheckOneOf("server.log_format", o.log_format, {"text", "json"}));
  if (!o.log_level.empty()) {
    TM_RETURN_IF_ERROR(CheckOneOf("server.log_level", o.log_level,
                                  {"trace", "debug", "info", "warn", "error", "off"}));
  }
  return absl::OkStatus();
}

absl::Status ResolveEngine(const v1::EngineSection& e, EngineFlags& f) {
  if (e.has_backend()) f.backend = e.backend();
  if (e.has_threads()) f.threads = e.threads();
  if (e.has_tensor_parallel()) f.tensor_parallel = e.tensor_parallel();
  if (e.has_max_num_seqs()) f.max_num_seqs = e.max_num_seqs();
  if (e.has_max_batched_tokens()) f.max_batched_tokens = e.max_batched_tokens();
  if (e.has_max_model_len()) f.max_model_len = e.max_model_len();
  if (e.has_kv_cache_blocks()) f.kv_cache_blocks = e.kv_cache_blocks();
  if (e.has_kv_cache_mb()) f.kv_cache_mb = e.kv_cache_mb();
  if (e.has_block_size()) f.block_size = e.block_size();
  if (e.has_prefix_caching()) f.no_prefix_caching = !e.prefix_caching();
  if (e.has_max_pending_requests()) f.max_pending_requests = e.max_pending_requests();
  TM_RETURN_IF_ERROR(CheckOneOf("engine.backend", f.backend, {"cpu", "cuda"}));
  TM_RETURN_IF_ERROR(CheckMin("engine.threads", f.threads, 0));
  TM_RETURN_IF_ERROR(CheckMin("engine.tensor_parallel", f.tensor_parallel, 1));
  TM_RETURN_IF_ERROR(CheckMin("engine.max_num_seqs", f.max_num_seqs, 1));
  TM_RETURN_IF_ERROR(CheckMin("engine.max_batched_tokens", f.max_batched_tokens, 1));
  TM_RETURN_IF_ERROR(CheckMin("engine.max_model_len", f.max_model_len, 0));
  TM_RETURN_IF_ERROR(CheckMin("engine.kv_cache_blocks", f.kv_cache_blocks, 0));
  TM_RETURN_IF_ERROR(CheckMin("engine.kv_cache_mb", static_cast<double>(f.kv_cache_mb), 0));
  TM_RETURN_IF_ERROR(CheckMin("engine.block_size", f.block_size, 1));
  TM_RETURN_IF_ERROR(CheckMin("engine.max_pending_requests", f.max_pending_requests, 0));
  return absl::OkStatus();
}

absl::Status ResolveLimits(const v1::LimitsSection& l, RequestLimits& r) {
  if (l.has_max_request_bytes()) r.max_request_bytes = l.max_request_bytes();
  if (l.has_max_prompt_tokens()) r.max_prompt_tokens = l.max_prompt_tokens();
  if (l.has_max_tokens()) r.max_tokens = l.max_tokens();
  if (l.has_default_max_tokens()) r.default_max_tokens = l.default_max_tokens();
  if (l.has_max_n()) r.max_n = l.max_n();
  if (l.has_max_stop_strings()) r.max_stop_strings = l.max_stop_strings();
  if (l.has_max_stop_string_bytes()) r.max_stop_string_bytes = l.max_stop_string_bytes();
  if (l.has_max_stop_token_ids()) r.max_stop_token_ids = l.max_stop_token_ids();
  if (l.has_max_logprobs()) r.max_logprobs = l.max_logprobs();
  if (l.has_max_messages()) r.max_messages = l.max_messages();
  TM_RETURN_IF_ERROR(
      CheckMin("limits.max_request_bytes", static_cast<double>(r.max_request_bytes), 1024));
  TM_RETURN_IF_ERROR(CheckMin("limits.max_prompt_tokens", r.max_prompt_tokens, 0));
  TM_RETURN_IF_ERROR(CheckMin("limits.max_tokens", r.max_tokens, 0));
  TM_RETURN_IF_ERROR(CheckMin("limits.default_max_tokens", r.default_max_tokens, 1));
  TM_RETURN_IF_ERROR(CheckMin("limits.max_n", r.max_n, 1));
  TM_RETURN_IF_ERROR(CheckMin("limits.max_stop_strings", r.max_stop_strings, 0));
  TM_RETURN_IF_ERROR(CheckMin("limits.max_stop_string_bytes", r.max_stop_string_bytes, 1));
  TM_RETURN_IF_ERROR(CheckMin("limits.max_stop_token_ids", r.max_stop_token_ids, 0));
  TM_RETURN_IF_ERROR(CheckMin("limits.max_messages", r.max_messages, 1));
  if (r.max_logprobs < 0 || r.max_logprobs > kMaxLogprobs) {
    return OutOfRange("limits.max_logprobs", absl::StrCat("in [0, ", kMaxLogprobs, "]"),
                      r.max_logprobs);
  }
  return absl::OkStatus();
}

absl::Status ResolveAuth(const v1::ServerConfig& c, ServeOptions& o) {
  const v1::AuthSection& a = c.auth();
  o.auth_enabled = a.has_enabled() ? a.enabled() : false;
  if (a.has_public_health()) o.public_health = a.public_health();
  if (a.has_public_metrics()) o.public_metrics = a.public_metrics();
  for (const v1::ApiKey& k : a.keys()) {
    o.api_keys.push_back(ApiKeyEntry{k.sha256(), k.tenant(), k.admin()});
  }
  // Validates the keys (with their paths) even when auth is off, so a typo is found early.
  TM_RETURN_IF_ERROR(
      Authenticator::Create(!o.api_keys.empty() || o.auth_enabled, o.api_keys).status());
  for (const auto& [name, t] : c.tenants()) {
    const std::string at = absl::StrCat("tenants.", name);
    TenantLimits l;
    l.requests_per_second = t.requests_per_second();
    l.burst = t.burst();
    l.max_concurrent_requests = t.max_concurrent_requests();
    l.tokens_per_minute = t.tokens_per_minute();
    TM_RETURN_IF_ERROR(CheckMin(at + ".requests_per_second", l.requests_per_second, 0));
    TM_RETURN_IF_ERROR(CheckMin(at + ".burst", l.burst, 0));
    TM_RETURN_IF_ERROR(CheckMin(at + ".max_concurrent_requests", l.max_concurrent_requests, 0));
    TM_RETURN_IF_ERROR(
        CheckMin(at + ".tokens_per_minute", static_cast<double>(l.tokens_per_minute), 0));
    o.tenant_limits[name] = l;
  }
  return absl::OkStatus();
}

absl::Status ResolveMetrics(const v1::ServerConfig& c, ServeOptions& o) {
  const v1::MetricsSection& m = c.metrics();
  if (m.has_ledger_dir()) o.ledger_dir = m.ledger_dir();
  if (m.has_energy_meter()) o.energy_meter = m.energy_meter();
  if (m.has_static_watts()) o.static_watts = m.static_watts();
  if (m.has_max_tenant_labels()) o.max_tenant_labels = m.max_tenant_labels();
  TM_RETURN_IF_ERROR(CheckOneOf("metrics.energy_meter", o.energy_meter,
                                {"auto", "nvml", "rapl", "static", "none"}));
  if (o.energy_meter == "static" && !(o.static_watts > 0)) {
    return absl::InvalidArgumentError(
        "metrics.static_watts: must be > 0 with energy_meter: static");
  }
  TM_RETURN_IF_ERROR(CheckMin("metrics.max_tenant_labels", o.max_tenant_labels, 1));
  const v1::CostSection& k = c.cost();
  metrics::CostConfig& cost = o.cost;
  if (k.has_currency()) cost.currency = k.currency();
  if (k.has_price_per_device_hour())
    cost.defaults.price_per_device_hour = k.price_per_device_hour();
  if (k.has_price_per_kwh()) cost.defaults.price_per_kwh = k.price_per_kwh();
  if (k.has_pue()) cost.defaults.pue = k.pue();
  // A tensor-parallel GPU engine occupies all its GPUs every step; a CPU engine is one node.
  cost.defaults.num_devices = k.has_num_devices()          ? k.num_devices()
                              : o.engine.backend == "cuda" ? o.engine.tensor_parallel
                                                           : 1;
  for (const auto& [model, p] : k.per_model()) {
    metrics::PriceOverride po;
    if (p.has_price_per_device_hour()) po.price_per_device_hour = p.price_per_device_hour();
    if (p.has_price_per_kwh()) po.price_per_kwh = p.price_per_kwh();
    if (p.has_pue()) po.pue = p.pue();
    if (p.has_num_devices()) po.num_devices = p.num_devices();
    cost.per_model[model] = po;
  }
  return cost.Validate();
}

}  // namespace

absl::StatusOr<v1::ServerConfig> ParseServerConfig(const std::string& yaml_text,
                                                   const std::string& source) {
  v1::ServerConfig config;
  TM_RETURN_IF_ERROR(ParseYamlOntoMessage(yaml_text, source, &config));
  return config;
}

absl::StatusOr<v1::ServerConfig> LoadServerConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("--config: cannot read ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return ParseServerConfig(text.str(), path);
}

absl::StatusOr<ServeOptions> ResolveServeOptions(const v1::ServerConfig& c) {
  ServeOptions o;
  o.model_path = c.model().path();
  o.tokenizer_path = c.model().tokenizer();
  o.served_name = c.model().served_name();
  o.chat_template_path = c.model().chat_template();
  if (o.model_path.empty()) {
    return absl::InvalidArgumentError("model.path: required (or --model PATH|demo)");
  }
  TM_RETURN_IF_ERROR(ResolveServer(c.server(), o));
  TM_RETURN_IF_ERROR(ResolveEngine(c.engine(), o.engine));
  TM_RETURN_IF_ERROR(ResolveLimits(c.limits(), o.limits));
  TM_RETURN_IF_ERROR(ResolveAuth(c, o));
  TM_RETURN_IF_ERROR(ResolveMetrics(c, o));
  const v1::TlsSection& t = c.tls();
  o.tls_cert_file = t.cert_file();
  o.tls_key_file = t.key_file();
  if (t.has_grpc()) o.tls_grpc = t.grpc();
  if (t.has_http()) o.tls_http = t.http();
  if (o.tls_cert_file.empty() != o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("tls: set both cert_file and key_file, or neither");
  }
  return o;
}

}  // namespace tokenmill
