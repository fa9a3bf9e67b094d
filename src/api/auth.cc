#include "tokenmill/api/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "tokenmill/api/errors.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

std::array<uint8_t, 32> Sha256(absl::string_view data) {
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  const int ok = EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr);
  TM_CHECK(ok == 1 && len == out.size(), "EVP_Digest(sha256) failed");
  return out;
}

bool ParseDigest(absl::string_view hex, std::array<uint8_t, 32>* out) {
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  const std::string bytes = absl::HexStringToBytes(absl::AsciiStrToLower(hex));
  std::copy(bytes.begin(), bytes.end(), out->begin());
  return true;
}

absl::Status Unauthenticated(absl::string_view why) {
  return WithReason(absl::UnauthenticatedError(why), ErrorReason::kInvalidApiKey);
}

}  // namespace

std::string Sha256Hex(absl::string_view data) {
  const std::array<uint8_t, 32> d = Sha256(data);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

absl::StatusOr<Authenticator> Authenticator::Create(bool enabled,
                                                    const std::vector<ApiKeyEntry>& keys) {
  Authenticator a;
  a.enabled_ = enabled;
  if (!enabled) return a;
  if (keys.empty()) {
    return absl::InvalidArgumentError("auth.keys: auth is enabled but no key is configured");
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    Entry e;
    if (!ParseDigest(keys[i].sha256_hex, &e.digest)) {
      return absl::InvalidArgumentError(
          absl::StrCat("auth.keys[", i,
                       "].sha256: must be 64 hex digits (the SHA-256 of the key, "
                       "e.g. `printf %s KEY | sha256sum`)"));
    }
    if (keys[i].tenant.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("auth.keys[", i, "].tenant: must be set"));
    }
    for (const Entry& other : a.entries_) {
      if (other.digest == e.digest) {
        return absl::InvalidArgumentError(
            absl::StrCat("auth.keys[", i, "].sha256: the same key is listed twice"));
      }
    }
    e.principal.tenant = keys[i].tenant;
    e.principal.is_admin = keys[i].is_admin;
    a.entries_.push_back(std::move(e));
  }
  return a;
}

absl::StatusOr<Principal> Authenticator::Authenticate(absl::string_view authorization) const {
  if (!enabled_) return Principal{};
  if (authorization.empty()) {
    return Unauthenticated("authorization: missing; send `authorization: Bearer <key>`");
  }
  absl::string_view value = absl::StripAsciiWhitespace(authorization);
  if (value.size() < 7 || !absl::EqualsIgnoreCase(value.substr(0, 7), "bearer ")) {
    return Unauthenticated("authorization: expected `Bearer <key>`");
  }
  const absl::string_view key = absl::StripAsciiWhitespace(value.substr(7));
  if (key.empty()) return Unauthenticated("authorization: empty key");
  const std::array<uint8_t, 32> digest = Sha256(key);
  // Every entry is compared, whatever matches, so the time does not depend on which did.
  const Entry* match = nullptr;
  for (const Entry& e : entries_) {
    const bool equal = CRYPTO_memcmp(e.digest.data(), digest.data(), digest.size()) == 0;
    if (equal) match = &e;
  }
  if (match == nullptr) return Unauthenticated("authorization: invalid API key");
  return match->principal;
}

}  // namespace tokenmill
