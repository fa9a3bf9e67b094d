#include "api/proto_convert.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "api/utf8.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/unknown_field_set.h"
#include "tokenmill/core/status.h"

namespace tokenmill {
namespace {

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", what));
}

absl::Status CheckUtf8(absl::string_view field, const std::string& s) {
  return IsValidUtf8(s) ? absl::OkStatus() : Invalid(field, "is not valid UTF-8");
}

absl::StatusOr<nlohmann::ordered_json> MessagesFromProto(const v1::ChatMessages& chat) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (int i = 0; i < chat.messages_size(); ++i) {
    const v1::ChatMessage& m = chat.messages(i);
    const std::string at = absl::StrCat("chat.messages[", i, "]");
    TM_RETURN_IF_ERROR(CheckUtf8(at + ".role", m.role()));
    TM_RETURN_IF_ERROR(CheckUtf8(at + ".content", m.content()));
    TM_RETURN_IF_ERROR(CheckUtf8(at + ".name", m.name()));
    nlohmann::ordered_json msg = {{"role", m.role()}, {"content", m.content()}};
    if (!m.name().empty()) msg["name"] = m.name();
    out.push_back(std::move(msg));
  }
  return out;
}

// The path ("chat.messages[0].content") of the first string field of `bytes`, a serialized
// `type`, that holds invalid UTF-8; "" when none does. Reads the bytes as unknown fields,
// which protobuf parses without checking UTF-8 (or logging about it).
std::string FindInvalidUtf8(const google::protobuf::Descriptor& type, absl::string_view bytes,
                            int depth) {
  google::protobuf::UnknownFieldSet fields;
  if (depth > 16 || !fields.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return "";
  }
  std::map<int, int> seen;  // field number -> occurrences so far (the index of a repeated one)
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& f = fields.field(i);
    if (f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) continue;
    const google::protobuf::FieldDescriptor* fd = type.FindFieldByNumber(f.number());
    if (fd == nullptr) continue;
    const int index = seen[f.number()]++;
    const std::string name =
        fd->is_repeated() ? absl::StrCat(fd->name(), "[", index, "]") : std::string(fd->name());
    if (fd->type() == google::protobuf::FieldDescriptor::TYPE_STRING &&
        !IsValidUtf8(f.length_delimited())) {
      return name;
    }
    if (fd->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE) {
      const std::string inner =
          FindInvalidUtf8(*fd->message_type(), f.length_delimited(), depth + 1);
      if (!inner.empty()) return absl::StrCat(name, ".", inner);
    }
  }
  return "";
}

absl::StatusOr<std::vector<int32_t>> IdsFromProto(
    absl::string_view field, const google::protobuf::RepeatedField<int32_t>& ids) {
  for (int i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0) return Invalid(absl::StrCat(field, "[", i, "]"), "must be >= 0");
  }
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string TokenText(const Tokenizer* tokenizer, int32_t id) {
  if (tokenizer == nullptr) return "";
  auto text = tokenizer->Decode(std::span<const int32_t>(&id, 1), /*skip_special=*/false);
  return text.ok() ? SanitizeUtf8(*text) : "";
}

}  // namespace

absl::Status ParseRequestFromWire(absl::string_view bytes, google::protobuf::Message& request) {
  // Checked first: protobuf would refuse the message, logging an error per bad request.
  const std::string bad = FindInvalidUtf8(*request.GetDescriptor(), bytes, 0);
  if (!bad.empty()) return Invalid(bad, "is not valid UTF-8");
  if (!request.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Invalid("request", absl::StrCat("is not a valid ", request.GetDescriptor()->full_name(),
                                           " message"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ClientRequest> ClientRequestFromProto(const v1::GenerateRequest& r) {
  ClientRequest c;
  c.protocol = "grpc";
  c.model = r.model();
  CompletionInput& in = c.input;
  switch (r.input_case()) {
    case v1::GenerateRequest::kText:
      in.prompt = r.text();
      break;
    case v1::GenerateRequest::kTokenIds: {
      TM_ASSIGN_OR_RETURN(auto ids, IdsFromProto("token_ids.ids", r.token_ids().ids()));
      in.prompt_ids = std::move(ids);
      break;
    }
    case v1::GenerateRequest::kChat: {
      TM_ASSIGN_OR_RETURN(in.messages, MessagesFromProto(r.chat()));
      in.add_generation_prompt =
          !r.chat().has_add_generation_prompt() || r.chat().add_generation_prompt();
      break;
    }
    case v1::GenerateRequest::INPUT_NOT_SET:
      return Invalid("input", "set one of text, token_ids or chat");
  }
  const v1::SamplingParams& s = r.sampling();
  SamplingParams& sp = in.sampling;
  if (s.has_temperature()) sp.temperature = s.temperature();
  if (s.has_top_k()) sp.top_k = s.top_k();
  if (s.has_top_p()) sp.top_p = s.top_p();
  if (s.has_min_p()) sp.min_p = s.min_p();
  if (s.has_repetition_penalty()) sp.repetition_penalty = s.repetition_penalty();
  if (s.has_frequency_penalty()) sp.frequency_penalty = s.frequency_penalty();
  if (s.has_presence_penalty()) sp.presence_penalty = s.presence_penalty();
  if (r.has_seed()) sp.seed = r.seed();
  TM_ASSIGN_OR_RETURN(sp.stop_token_ids, IdsFromProto("stop_token_ids", r.stop_token_ids()));
  sp.ignore_eos = r.ignore_eos();
  sp.logprobs = r.logprobs();
  if (r.has_max_tokens()) c.max_tokens = r.max_tokens();
  in.n = r.has_n() ? r.n() : 1;
  in.priority = r.priority();
  for (int i = 0; i < r.stop_size(); ++i) {
    TM_RETURN_IF_ERROR(CheckUtf8(absl::StrCat("stop[", i, "]"), r.stop(i)));
    in.stop.push_back(r.stop(i));
  }
  if (r.has_add_special_tokens()) in.add_special = r.add_special_tokens();
  in.skip_special_tokens = !r.has_skip_special_tokens() || r.skip_special_tokens();
  TM_RETURN_IF_ERROR(CheckUtf8("request_id", r.request_id()));
  in.request_id = r.request_id();
  if (in.prompt.has_value()) TM_RETURN_IF_ERROR(CheckUtf8("text", *in.prompt));
  return c;
}

absl::StatusOr<CompletionInput> TokenizeInputFromProto(const v1::TokenizeRequest& r) {
  CompletionInput in;
  switch (r.input_case()) {
    case v1::TokenizeRequest::kText:
      TM_RETURN_IF_ERROR(CheckUtf8("text", r.text()));
      in.prompt = r.text();
      break;
    case v1::TokenizeRequest::kChat: {
      TM_ASSIGN_OR_RETURN(in.messages, MessagesFromProto(r.chat()));
      in.add_generation_prompt =
          !r.chat().has_add_generation_prompt() || r.chat().add_generation_prompt();
      break;
    }
    case v1::TokenizeRequest::INPUT_NOT_SET:
      return Invalid("input", "set one of text or chat");
  }
  if (r.has_add_special_tokens()) in.add_special = r.add_special_tokens();
  return in;
}

v1::FinishReason FinishReasonToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return v1::FINISH_REASON_UNSPECIFIED;
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kContextLength:
      return v1::FINISH_REASON_CONTEXT_LENGTH;
    case FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kDeadline:
      return v1::FINISH_REASON_DEADLINE;
    case FinishReason::kError:
      return v1::FINISH_REASON_ERROR;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

v1::GenerateResponse DeltaToProto(const std::string& request_id, const CompletionDelta& d,
                                  const Tokenizer* tokenizer, int top_logprobs) {
  v1::GenerateResponse m;
  m.set_request_id(request_id);
  m.set_index(d.index);
  m.set_text(d.text);
  m.mutable_token_ids()->Add(d.ids.begin(), d.ids.end());
  for (const SampledToken& t : d.logprobs) {
    v1::TokenLogprob* lp = m.add_logprobs();
    lp->set_token_id(t.token_id);
    lp->set_logprob(t.logprob);
    lp->set_rank(t.rank);
    lp->set_token(TokenText(tokenizer, t.token_id));
    for (int k = 0; k < std::min<int>(top_logprobs, t.top_logprobs.size()); ++k) {
      v1::TopLogprob* top = lp->add_top_logprobs();
      top->set_token_id(t.top_logprobs[k].token_id);
      top->set_logprob(t.top_logprobs[k].logprob);
      top->set_token(TokenText(tokenizer, t.top_logprobs[k].token_id));
    }
  }
  m.set_finish_reason(FinishReasonToProto(d.finish_reason));
  return m;
}

void MergeDelta(v1::GenerateResponse& into, const v1::GenerateResponse& from) {
  into.mutable_text()->append(from.text());
  into.mutable_token_ids()->MergeFrom(from.token_ids());
  into.mutable_logprobs()->MergeFrom(from.logprobs());
  if (from.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
    into.set_finish_reason(from.finish_reason());
  }
}

void FillFinalInfo(const CompletionResult& result, v1::FinalInfo* f) {
  for (const CompletionChoice& c : result.choices) {
    f->add_finish_reasons(FinishReasonToProto(c.finish_reason));
  }
  const RequestUsage& u = result.usage;
  const metrics::RequestRecord& rec = u.record;
  v1::Usage* usage = f->mutable_usage();
  usage->set_prompt_tokens(u.prompt_tokens);
  usage->set_cached_tokens(u.cached_tokens);
  usage->set_generated_tokens(u.generated_tokens);
  usage->set_total_tokens(u.prompt_tokens + u.generated_tokens);
  v1::Timings* t = f->mutable_timings();
  if (rec.queue_s.has_value()) t->set_queue_s(*rec.queue_s);
  if (rec.ttft_s.has_value()) t->set_ttft_s(*rec.ttft_s);
  if (rec.tpot_s.has_value()) t->set_tpot_s(*rec.tpot_s);
  t->set_e2e_s(rec.e2e_s);
  t->set_device_s(rec.device_s);
  v1::Energy* e = f->mutable_energy();
  if (rec.joules.has_value()) e->set_joules(*rec.joules);
  if (rec.tokens_per_joule.has_value()) e->set_tokens_per_joule(*rec.tokens_per_joule);
  e->set_energy_source(metrics::EnergySourceName(rec.energy_source));
  f->mutable_cost()->set_cost(rec.cost);
  f->mutable_cost()->set_currency(rec.currency);
  f->mutable_prompt_token_ids()->Add(result.prompt_ids.begin(), result.prompt_ids.end());
}

void FillStats(const EngineStats& s, int block_size, v1::GetStatsResponse* out) {
  out->set_num_running(s.num_running);
  out->set_num_waiting(s.num_waiting);
  out->set_num_pending_requests(s.num_pending_requests);
  out->set_num_steps(s.num_steps);
  out->set_num_failed_steps(s.num_failed_steps);
  v1::SchedulerStats* sc = out->mutable_scheduler();
  sc->set_num_steps(s.scheduler.num_steps);
  sc->set_num_prefill_tokens(s.scheduler.num_prefill_tokens);
  sc->set_num_decode_tokens(s.scheduler.num_decode_tokens);
  sc->set_num_generated_tokens(s.scheduler.num_generated_tokens);
  sc->set_num_cached_prompt_tokens(s.scheduler.num_cached_prompt_tokens);
  sc->set_num_preemptions(s.scheduler.num_preemptions);
  sc->set_num_finished_requests(s.scheduler.num_finished_requests);
  sc->set_num_aborted_sequences(s.scheduler.num_aborted_sequences);
  v1::KvCacheStats* kv = out->mutable_kv_cache();
  kv->set_num_blocks(s.kv.num_blocks);
  kv->set_num_used_blocks(s.kv.num_used_blocks);
  kv->set_num_free_blocks(s.kv.num_free_blocks);
  kv->set_num_cached_free_blocks(s.kv.num_cached_free_blocks);
  kv->set_block_size(block_size);
  kv->set_usage(s.kv.num_blocks > 0 ? static_cast<double>(s.kv.num_used_blocks) / s.kv.num_blocks
                                    : 0.0);
  kv->set_prefix_query_tokens(s.kv.prefix_query_tokens);
  kv->set_prefix_hit_tokens(s.kv.prefix_hit_tokens);
}

}  // namespace tokenmill
