// API keys: the config stores SHA-256 hashes of keys, each mapped to a tenant (and an admin
// flag); clients send `authorization: Bearer KEY` (gRPC metadata or HTTP header). A
// presented key is hashed and compared with every stored hash in constant time, so neither
// timing nor the config reveals a key.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tokenmill {

// Lowercase hex SHA-256 of `data` (OpenSSL EVP).
std::string Sha256Hex(absl::string_view data);

struct ApiKeyEntry {
  std::string sha256_hex;  // 64 hex digits (either case)
  std::string tenant;
  bool is_admin = false;
};

// Who is calling. Without auth every caller is the admin of tenant "default".
struct Principal {
  std::string tenant = "default";
  bool is_admin = true;
};

// Immutable after Create; thread-safe.
class Authenticator {
 public:
  // Auth off: every request is Principal{}. Auth on: needs at least one key. Errors name the
  // entry ("auth.keys[1].sha256: ..."): malformed hash, empty tenant, duplicate hash.
  static absl::StatusOr<Authenticator> Create(bool enabled, const std::vector<ApiKeyEntry>& keys);
  Authenticator() = default;  // auth off

  bool enabled() const { return enabled_; }
  // `authorization` is the header's value ("" when absent). Unauthenticated (with reason
  // kInvalidApiKey) when auth is on and the value is missing, not "Bearer KEY", or unknown.
  absl::StatusOr<Principal> Authenticate(absl::string_view authorization) const;

 private:
  struct Entry {
    std::array<uint8_t, 32> digest;
    Principal principal;
  };
  bool enabled_ = false;
  std::vector<Entry> entries_;
};

}  // namespace tokenmill
