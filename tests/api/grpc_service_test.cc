// tokenmill.v1.Inference in process (GrpcServer on loopback, the demo model, auth on): every
// method answers bytes that are not its request (invalid UTF-8 in a string field, truncated,
// garbage, no message at all) with INVALID_ARGUMENT naming the field, counts the refusal, and
// checks the key first; well-formed requests from the generated stubs still work.
#include "api/grpc_service.h"

#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "api/grpc_raw_call.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "gtest/gtest.h"
#include "tokenmill/api/auth.h"
#include "tokenmill/api/grpc_server.h"
#include "tokenmill/metrics/registry.h"
#include "tokenmill/server/engine_flags.h"

namespace tokenmill {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using testing::CallWithRawBytes;

constexpr char kUserKey[] = "key-of-alice";
constexpr char kAdminKey[] = "key-of-ops";

// Stands for a bad string while a message is built and serialized (protobuf would log about
// invalid UTF-8), then is swapped for kBadUtf8, whose length is the same.
constexpr char kMarker[] = "<BAD>";
constexpr char kBadUtf8[] = "\xC3\x28\xFF\xFE\x80";
static_assert(sizeof(kMarker) == sizeof(kBadUtf8));

// Every method of the service, from the proto: a method added there is covered here.
std::vector<const google::protobuf::MethodDescriptor*> InferenceMethods() {
  const google::protobuf::ServiceDescriptor* service =
      v1::GenerateRequest::descriptor()->file()->FindServiceByName("Inference");
  std::vector<const google::protobuf::MethodDescriptor*> methods;
  for (int i = 0; service != nullptr && i < service->method_count(); ++i) {
    methods.push_back(service->method(i));
  }
  return methods;
}

const google::protobuf::MethodDescriptor& Method(const std::string& name) {
  const google::protobuf::MethodDescriptor* m = nullptr;
  for (const auto* each : InferenceMethods()) m = each->name() == name ? each : m;
  EXPECT_NE(m, nullptr) << name;
  return *m;
}

std::string PathOf(const google::protobuf::MethodDescriptor& m) {
  return "/" + m.service()->full_name() + "/" + m.name();
}

const Message& Prototype(const Descriptor& type) {
  return *google::protobuf::MessageFactory::generated_factory()->GetPrototype(&type);
}

// One message of `type` per string field reachable in it (nested ones too), that field set to
// kMarker, keyed by the field's path as the service names it. A repeated field gets a valid
// element first, so the bad one is [1].
std::map<std::string, std::unique_ptr<Message>> OneBadStringFieldEach(const Descriptor& type) {
  std::map<std::string, std::unique_ptr<Message>> out;
  for (int i = 0; i < type.field_count(); ++i) {
    const FieldDescriptor* fd = type.field(i);
    const std::string name = fd->is_repeated() ? fd->name() + "[1]" : fd->name();
    if (fd->type() == FieldDescriptor::TYPE_STRING) {
      std::unique_ptr<Message> m(Prototype(type).New());
      if (fd->is_repeated()) {
        m->GetReflection()->AddString(m.get(), fd, "fine");
        m->GetReflection()->AddString(m.get(), fd, kMarker);
      } else {
        m->GetReflection()->SetString(m.get(), fd, kMarker);
      }
      out[name] = std::move(m);
    } else if (fd->type() == FieldDescriptor::TYPE_MESSAGE) {
      for (auto& [inner, value] : OneBadStringFieldEach(*fd->message_type())) {
        std::unique_ptr<Message> m(Prototype(type).New());
        const google::protobuf::Reflection* r = m->GetReflection();
        if (fd->is_repeated()) {
          r->AddMessage(m.get(), fd);
          r->AddMessage(m.get(), fd)->CopyFrom(*value);
        } else {
          r->MutableMessage(m.get(), fd)->CopyFrom(*value);
        }
        out[name + "." + inner] = std::move(m);
      }
    }
  }
  return out;
}

std::string WithBadUtf8(const Message& m) {
  std::string bytes = m.SerializeAsString();
  const size_t at = bytes.find(kMarker);
  if (at != std::string::npos) bytes.replace(at, sizeof(kMarker) - 1, kBadUtf8);
  return bytes;
}

class GrpcServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { state_ = new State(); }
  static void TearDownTestSuite() {
    delete state_;
    state_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(state_->server, nullptr) << "the server did not start"; }

  // Everything the tests share: one engine and server for the suite.
  struct State {
    State() {
      auto bundle = LoadModelBundle("demo");
      EXPECT_TRUE(bundle.ok()) << bundle.status();
      if (!bundle.ok()) return;
      this->bundle = *std::move(bundle);
      EngineFlags flags;
      flags.max_model_len = 64;
      flags.kv_cache_blocks = 64;
      flags.threads = 1;
      auto built = BuildEngine(this->bundle, flags);
      EXPECT_TRUE(built.ok()) << built.status();
      if (!built.ok()) return;
      engine = *std::move(built);
      auto a = Authenticator::Create(
          true, {{Sha256Hex(kUserKey), "alice", false}, {Sha256Hex(kAdminKey), "ops", true}});
      EXPECT_TRUE(a.ok()) << a.status();
      if (!a.ok()) return;
      auth = *std::move(a);
      FrontendOptions options;
      options.model_name = "demo";
      frontend =
          std::make_unique<Frontend>(*engine, this->bundle, auth, nullptr, options, &registry);
      GrpcServerOptions server_options;
      server_options.port = 0;
      server_options.reflection = false;
      auto started = GrpcServer::Start(*frontend, server_options);
      EXPECT_TRUE(started.ok()) << started.status();
      if (!started.ok()) return;
      server = *std::move(started);
      channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server->port()),
                                    grpc::InsecureChannelCredentials());
    }
    ModelBundle bundle;
    std::unique_ptr<Engine> engine;
    Authenticator auth;
    metrics::MetricRegistry registry;
    std::unique_ptr<Frontend> frontend;
    std::unique_ptr<GrpcServer> server;
    std::shared_ptr<grpc::Channel> channel;
  };

  static testing::RawCallOutcome Call(const google::protobuf::MethodDescriptor& m,
                                      const std::optional<std::string>& bytes,
                                      const std::string& key = kUserKey) {
    return CallWithRawBytes(state_->channel, PathOf(m), bytes, key);
  }

  // tokenmill:request_rejections_total summed over the samples with these label values.
  static double Rejections(const std::string& tenant, const std::string& error_code) {
    std::istringstream text(state_->registry.RenderText());
    double sum = 0;
    for (std::string line; std::getline(text, line);) {
      if (line.rfind("tokenmill:request_rejections_total{", 0) != 0) continue;
      if (line.find("tenant=\"" + tenant + "\"") == std::string::npos) continue;
      if (line.find("error_code=\"" + error_code + "\"") == std::string::npos) continue;
      sum += std::stod(line.substr(line.rfind(' ') + 1));
    }
    return sum;
  }

  // The call is refused with INVALID_ARGUMENT and exactly `message`, no reply, one more
  // refusal counted for alice.
  static void ExpectRefused(const google::protobuf::MethodDescriptor& m,
                            const std::optional<std::string>& bytes, const std::string& message) {
    const double before = Rejections("alice", "invalid_argument");
    const testing::RawCallOutcome out = Call(m, bytes);
    EXPECT_FALSE(out.timed_out) << m.name();
    EXPECT_EQ(out.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << m.name() << ": " << out.status.error_message();
    EXPECT_EQ(out.status.error_message(), message) << m.name();
    EXPECT_TRUE(out.replies.empty()) << m.name();
    EXPECT_EQ(Rejections("alice", "invalid_argument"), before + 1) << m.name() << ": " << message;
  }

  static State* state_;
};
GrpcServiceTest::State* GrpcServiceTest::state_ = nullptr;

TEST_F(GrpcServiceTest, TheServiceHasTheMethodsTheseTestsCover) {
  std::vector<std::string> names;
  for (const auto* m : InferenceMethods()) names.push_back(m->name());
  EXPECT_EQ(names, std::vector<std::string>(
                       {"Generate", "Tokenize", "Detokenize", "ListModels", "GetStats"}));
}

// Regression (issue #10): protobuf refuses a message whose string field holds invalid UTF-8,
// and gRPC's generated handler answered a bare, uncounted UNIMPLEMENTED.
TEST_F(GrpcServiceTest, InvalidUtf8InEachStringFieldIsInvalidArgumentNamingIt) {
  std::map<std::string, std::vector<std::string>> fields_by_method;
  for (const auto* m : InferenceMethods()) {
    for (const auto& [field, message] : OneBadStringFieldEach(*m->input_type())) {
      fields_by_method[m->name()].push_back(field);
      ExpectRefused(*m, WithBadUtf8(*message), field + ": is not valid UTF-8");
    }
  }
  // The walk found every string field (a new one is covered, and shows up here).
  using Fields = std::vector<std::string>;
  EXPECT_EQ(fields_by_method["Generate"],
            Fields({"chat.messages[1].content", "chat.messages[1].name", "chat.messages[1].role",
                    "model", "request_id", "stop[1]", "text"}));
  EXPECT_EQ(fields_by_method["Tokenize"],
            Fields({"chat.messages[1].content", "chat.messages[1].name", "chat.messages[1].role",
                    "model", "text"}));
  EXPECT_EQ(fields_by_method["Detokenize"], Fields({"model"}));
  EXPECT_EQ(fields_by_method.count("ListModels") + fields_by_method.count("GetStats"), 0u);
}

TEST_F(GrpcServiceTest, TruncatedOrGarbageBytesAreInvalidArgumentNamingTheMessage) {
  for (const auto* m : InferenceMethods()) {
    const std::string not_one =
        "request: is not a valid " + m->input_type()->full_name() + " message";
    ExpectRefused(*m, std::string("\xFF\xFF\xFF not a message"), not_one);
    // Field 1, length-delimited, 5 bytes announced and 2 sent.
    ExpectRefused(*m, std::string("\x0A\x05hi", 4), not_one);
    // A varint that never ends.
    ExpectRefused(*m, std::string("\x08\x80\x80\x80", 4), not_one);
  }
  // A well-formed request cut in the middle of a field.
  v1::TokenizeRequest t;
  t.set_text("a sentence that will be cut short");
  const std::string whole = t.SerializeAsString();
  ExpectRefused(Method("Tokenize"), whole.substr(0, whole.size() / 2),
                "request: is not a valid tokenmill.v1.TokenizeRequest message");
}

// A call whose request message never comes (the client half-closes at once) is refused as
// Generate's is, not served as an empty request (ListModels' and GetStats' are empty).
TEST_F(GrpcServiceTest, ACallWithoutItsRequestMessageIsRefused) {
  for (const auto* m : InferenceMethods()) {
    ExpectRefused(*m, std::nullopt,
                  "request: the call carried no " + m->input_type()->full_name() + " message");
  }
}

// gRPC itself refuses a message over limits.max_request_bytes before any handler runs (so
// the refusal is not counted); docs/api.md says so.
TEST_F(GrpcServiceTest, AMessageOverTheSizeLimitIsResourceExhausted) {
  v1::TokenizeRequest t;
  t.set_text(std::string(state_->frontend->limits().max_request_bytes, 'a'));
  const double before = Rejections("alice", "resource_exhausted");
  const testing::RawCallOutcome out = Call(Method("Tokenize"), t.SerializeAsString());
  EXPECT_EQ(out.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << out.status.error_message();
  EXPECT_EQ(Rejections("alice", "resource_exhausted"), before);
}

TEST_F(GrpcServiceTest, TheKeyIsCheckedBeforeTheBytes) {
  for (const auto* m : InferenceMethods()) {
    const double before = Rejections("unknown", "unauthenticated");
    for (const char* key : {"", "not-a-key"}) {
      const testing::RawCallOutcome out = Call(*m, std::string("\xFF\xFF garbage"), key);
      EXPECT_EQ(out.status.error_code(), grpc::StatusCode::UNAUTHENTICATED)
          << m->name() << ": " << out.status.error_message();
    }
    EXPECT_EQ(Rejections("unknown", "unauthenticated"), before + 2) << m->name();
  }
  // A valid request with a key that may not read the stats, then with one that may.
  EXPECT_EQ(Call(Method("GetStats"), std::string()).status.error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  const testing::RawCallOutcome ok = Call(Method("GetStats"), std::string(), kAdminKey);
  ASSERT_TRUE(ok.status.ok()) << ok.status.error_message();
  ASSERT_EQ(ok.replies.size(), 1u);
  v1::GetStatsResponse stats;
  ASSERT_TRUE(stats.ParseFromString(ok.replies[0]));
  EXPECT_EQ(stats.model(), "demo");
  EXPECT_EQ(stats.kv_cache().num_blocks(), 64);
}

// The raw handlers speak the same wire format as before: the generated stubs work, an empty
// message is a valid request, and fields a newer client sends are ignored.
TEST_F(GrpcServiceTest, WellFormedRequestsAreServed) {
  auto stub = v1::Inference::NewStub(state_->channel);
  auto context = [](const char* key) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->AddMetadata("authorization", std::string("Bearer ") + key);
    return ctx;
  };
  v1::TokenizeRequest treq;
  treq.set_text("hi");
  v1::TokenizeResponse tres;
  ASSERT_TRUE(stub->Tokenize(context(kUserKey).get(), treq, &tres).ok());
  EXPECT_EQ(std::vector<int32_t>(tres.token_ids().begin(), tres.token_ids().end()),
            std::vector<int32_t>({256, 'h', 'i'}));
  EXPECT_EQ(tres.max_model_len(), 64);

  v1::DetokenizeRequest dreq;
  dreq.add_token_ids('o');
  dreq.add_token_ids('k');
  v1::DetokenizeResponse dres;
  ASSERT_TRUE(stub->Detokenize(context(kUserKey).get(), dreq, &dres).ok());
  EXPECT_EQ(dres.text(), "ok");
  dreq.add_token_ids(1 << 20);
  const grpc::Status bad = stub->Detokenize(context(kUserKey).get(), dreq, &dres);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(bad.error_message().rfind("token_ids[2]: ", 0), 0u) << bad.error_message();
  dreq.set_model("gpt-4");
  EXPECT_EQ(stub->Detokenize(context(kUserKey).get(), dreq, &dres).error_code(),
            grpc::StatusCode::NOT_FOUND);

  v1::ListModelsResponse models;
  ASSERT_TRUE(stub->ListModels(context(kUserKey).get(), v1::ListModelsRequest(), &models).ok());
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).id(), "demo");
  // Field 9 (a string no ListModelsRequest has) from a newer client.
  const testing::RawCallOutcome newer = Call(Method("ListModels"), std::string("\x4A\x03new", 5));
  EXPECT_TRUE(newer.status.ok()) << newer.status.error_message();
  EXPECT_EQ(newer.replies.size(), 1u);

  v1::GetStatsResponse stats;
  ASSERT_TRUE(stub->GetStats(context(kAdminKey).get(), v1::GetStatsRequest(), &stats).ok());
  EXPECT_EQ(stats.model(), "demo");

  // Generate still streams (its request parsed by the same code).
  v1::GenerateRequest g;
  g.set_text("Hi");
  g.set_max_tokens(3);
  g.mutable_sampling()->set_temperature(0);
  g.set_ignore_eos(true);
  auto ctx = context(kUserKey);
  auto reader = stub->Generate(ctx.get(), g);
  v1::GenerateResponse msg;
  int num_tokens = 0;
  bool has_final = false;
  while (reader->Read(&msg)) {
    num_tokens += msg.token_ids_size();
    has_final = has_final || msg.has_final();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(num_tokens, 3);
  EXPECT_TRUE(has_final);
}

// Regression (issue #10, soak test): a client whose deadline expires cancels the call itself,
// and its cancel can reach the server just before the server's copy of the deadline passes;
// such calls were counted as client aborts instead of deadline_exceeded.
TEST(CancelReasonForTest, ACancelAtTheDeadlineIsTheDeadline) {
  EXPECT_EQ(CancelReasonFor(std::nullopt), FinishReason::kCancelled);
  EXPECT_EQ(CancelReasonFor(5.0), FinishReason::kCancelled);
  EXPECT_EQ(CancelReasonFor(kDeadlineCancelSlackS + 0.01), FinishReason::kCancelled);
  EXPECT_EQ(CancelReasonFor(kDeadlineCancelSlackS), FinishReason::kDeadline);
  EXPECT_EQ(CancelReasonFor(0.002), FinishReason::kDeadline);
  EXPECT_EQ(CancelReasonFor(0.0), FinishReason::kDeadline);
  EXPECT_EQ(CancelReasonFor(-1.0), FinishReason::kDeadline);
}

}  // namespace
}  // namespace tokenmill
