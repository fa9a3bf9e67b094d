// The daemon's configuration: a YAML file (proto/tokenmill/v1/config.proto is its schema)
// overlaid by command-line flags, resolved into plain, validated options with every default
// applied. Parsed once in `serve`; the structs are then passed down immutable.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenmill/api/auth.h"
#include "tokenmill/api/frontend.h"
#include "tokenmill/api/tenant_limiter.h"
#include "tokenmill/metrics/cost_model.h"
#include "tokenmill/server/engine_flags.h"
#include "tokenmill/v1/config.pb.h"

namespace tokenmill {

// Reads and parses a YAML config file. Errors name the file, the field path and the line.
absl::StatusOr<v1::ServerConfig> LoadServerConfigFile(const std::string& path);
absl::StatusOr<v1::ServerConfig> ParseServerConfig(const std::string& yaml_text,
                                                   const std::string& source = "config");

struct ServeOptions {
  // model
  std::string model_path;  // required
  std::string tokenizer_path;
  std::string served_name;         // "" : the bundle's name
  std::string chat_template_path;  // "" : the model's own template
  // server
  std::string host = "127.0.0.1";
  int grpc_port = 50051;
  int http_port = 8080;
  bool enable_grpc = true;
  bool enable_http = true;
  int http_threads = 128;
  double drain_timeout_s = 30;
  bool grpc_reflection = true;
  std::string log_format = "text";
  std::string log_level;  // "" : leave the level main() set
  bool log_prompts = false;
  double http_keep_alive_timeout_s = 5;
  // engine, limits, auth, tenants
  EngineFlags engine;
  RequestLimits limits;
  bool auth_enabled = false;
  std::vector<ApiKeyEntry> api_keys;
  bool public_health = true;
  bool public_metrics = false;
  std::map<std::string, TenantLimits> tenant_limits;
  // metrics and cost
  std::string ledger_dir;
  std::string energy_meter = "auto";
  double static_watts = 0;
  int max_tenant_labels = 32;
  metrics::CostConfig cost;
  // tls
  std::string tls_cert_file;
  std::string tls_key_file;
  bool tls_grpc = true;
  bool tls_http = true;
};

// Applies defaults and validates ranges; errors name the config path
// ("server.grpc_port: must be in [0, 65535], got 70000").
absl::StatusOr<ServeOptions> ResolveServeOptions(const v1::ServerConfig& config);

}  // namespace tokenmill
