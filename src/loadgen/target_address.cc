#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tokenmill/loadgen/target.h"

namespace tokenmill::loadgen {

absl::StatusOr<TargetAddress> ParseTargetAddress(absl::string_view text) {
  TargetAddress a;
  if (text == "inproc") {
    a.kind = "inproc";
    return a;
  }
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--target '", text, "': ", why,
        " (expected inproc, http://HOST:PORT, https://HOST:PORT or grpc://HOST:PORT)"));
  };
  const size_t sep = text.find("://");
  if (sep == absl::string_view::npos) return bad("no scheme");
  a.scheme = std::string(text.substr(0, sep));
  if (a.scheme == "http" || a.scheme == "https") {
    a.kind = "http";
  } else if (a.scheme == "grpc") {
    a.kind = "grpc";
  } else {
    return bad(absl::StrCat("unknown scheme '", a.scheme, "'"));
  }
  absl::string_view rest = text.substr(sep + 3);
  const size_t slash = rest.find('/');
  absl::string_view hostport = rest.substr(0, slash);
  if (slash != absl::string_view::npos) {
    if (a.kind != "http") return bad("a grpc target has no path");
    absl::string_view path = rest.substr(slash);
    while (absl::EndsWith(path, "/")) path.remove_suffix(1);
    // "http://host:8000/v1" is how OpenAI clients spell the base URL; accept it too.
    if (absl::EndsWith(path, "/v1")) path.remove_suffix(3);
    a.path_prefix = std::string(path);
  }
  absl::string_view port_text;
  if (absl::StartsWith(hostport, "[")) {  // [::1]:8000
    const size_t close = hostport.find(']');
    if (close == absl::string_view::npos) return bad("unclosed '['");
    a.host = std::string(hostport.substr(1, close - 1));
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') return bad("expected ':' after ']'");
      port_text = hostport.substr(close + 2);
    }
  } else {
    const size_t colon = hostport.rfind(':');
    a.host = std::string(hostport.substr(0, colon));
    if (colon != absl::string_view::npos) port_text = hostport.substr(colon + 1);
  }
  if (a.host.empty()) return bad("no host");
  if (port_text.empty()) {
    if (a.kind == "grpc") return bad("a grpc target needs a port");
    a.port = a.scheme == "https" ? 443 : 80;
  } else if (!absl::SimpleAtoi(port_text, &a.port) || a.port < 1 || a.port > 65535) {
    return bad(absl::StrCat("bad port '", port_text, "'"));
  }
  return a;
}

}  // namespace tokenmill::loadgen
