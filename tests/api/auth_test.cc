#include "tokenmill/api/auth.h"

#include "absl/strings/ascii.h"
#include "gtest/gtest.h"
#include "tokenmill/api/errors.h"

namespace tokenmill {
namespace {

TEST(Sha256HexTest, KnownVectors) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Authenticator Make() {
  auto a =
      Authenticator::Create(true, {{Sha256Hex("key-a"), "acme", false},
                                   {"ABCDEF" + Sha256Hex("key-admin").substr(6), "ops", true}});
  EXPECT_TRUE(a.ok()) << a.status();
  return *a;
}

TEST(AuthenticatorTest, MapsBearerKeysToTenants) {
  const Authenticator a = Make();
  auto p = a.Authenticate("Bearer key-a");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->tenant, "acme");
  EXPECT_FALSE(p->is_admin);
  p = a.Authenticate("  bearer   key-a  ");  // scheme is case-insensitive, spaces trimmed
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->tenant, "acme");
}

TEST(AuthenticatorTest, UppercaseHashesInTheConfigWork) {
  const Authenticator a =
      Authenticator::Create(true, {{absl::AsciiStrToUpper(Sha256Hex("key-admin")), "ops", true}})
          .value();
  auto p = a.Authenticate("Bearer key-admin");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->is_admin);
}

TEST(AuthenticatorTest, RefusesMissingMalformedAndUnknownKeys) {
  const Authenticator a = Make();
  for (const char* header :
       {"", "key-a", "Basic a2V5LWE=", "Bearer", "Bearer ", "Bearer key-b", "Bearer key-a2"}) {
    auto p = a.Authenticate(header);
    ASSERT_FALSE(p.ok()) << header;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kUnauthenticated) << header;
    EXPECT_EQ(ReasonOf(p.status()), ErrorReason::kInvalidApiKey);
    EXPECT_EQ(std::string(p.status().message()).find("key-"), std::string::npos)
        << "the key must not be echoed: " << p.status();
  }
}

TEST(AuthenticatorTest, OffMeansEveryoneIsTheDefaultAdmin) {
  const Authenticator a;
  auto p = a.Authenticate("");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->tenant, "default");
  EXPECT_TRUE(p->is_admin);
}

TEST(AuthenticatorTest, ConfigErrorsNameTheEntry) {
  EXPECT_EQ(Authenticator::Create(true, {}).status().message(),
            "auth.keys: auth is enabled but no key is configured");
  auto bad = Authenticator::Create(true, {{Sha256Hex("a"), "t", false}, {"xyz", "t", false}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(std::string(bad.status().message()).rfind("auth.keys[1].sha256:", 0), 0u);
  bad = Authenticator::Create(true, {{Sha256Hex("a"), "", false}});
  EXPECT_EQ(bad.status().message(), "auth.keys[0].tenant: must be set");
  bad = Authenticator::Create(true, {{Sha256Hex("a"), "t", false}, {Sha256Hex("a"), "u", true}});
  EXPECT_EQ(bad.status().message(), "auth.keys[1].sha256: the same key is listed twice");
}

}  // namespace
}  // namespace tokenmill
