#include "engine/step_wire.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "tokenmill/core/status.h"

namespace tokenmill::wire {
namespace {

constexpr uint32_t kMagic = 0x50534d54;  // "TMSP"
// Past this a length is garbage, not a step (a step is a few MB at most).
constexpr uint64_t kMaxElements = uint64_t{1} << 28;

class Writer {
 public:
  void U32(uint32_t v) {
    char b[4];
    for (int i = 0; i < 4; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    out_.append(b, 4);
  }
  void I32(int32_t v) { U32(static_cast<uint32_t>(v)); }
  void I32s(std::span<const int32_t> v) {
    U32(static_cast<uint32_t>(v.size()));
    for (int32_t x : v) I32(x);
  }
  void Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U32(uint32_t* v) {
    if (in_.size() - pos_ < 4) return Bad();
    *v = 0;
    for (int i = 0; i < 4; ++i) {
      *v |= static_cast<uint32_t>(static_cast<unsigned char>(in_[pos_ + i])) << (8 * i);
    }
    pos_ += 4;
    return true;
  }
  bool I32(int32_t* v) {
    uint32_t u = 0;
    if (!U32(&u)) return false;
    *v = static_cast<int32_t>(u);
    return true;
  }
  // A count of items of at least `min_bytes` each, checked against what is left.
  bool Count(uint32_t* n, size_t min_bytes) {
    if (!U32(n) || (in_.size() - pos_) / min_bytes < *n) return Bad();
    return true;
  }
  bool I32s(std::vector<int32_t>* v) {
    uint32_t n = 0;
    if (!U32(&n) || n > kMaxElements || (in_.size() - pos_) / 4 < n) return Bad();
    v->resize(n);
    for (int32_t& x : *v) I32(&x);
    return true;
  }
  bool Str(std::string* s) {
    uint32_t n = 0;
    if (!U32(&n) || in_.size() - pos_ < n) return Bad();
    s->assign(in_.substr(pos_, n));
    pos_ += n;
    return true;
  }
  // OK when everything was read and nothing is left over.
  absl::Status Done(const char* what) const {
    if (ok_ && pos_ == in_.size()) return absl::OkStatus();
    return absl::DataLossError(
        absl::StrCat("garbled ", what, " message from the leader (", in_.size(), " bytes)"));
  }

 private:
  bool Bad() {
    ok_ = false;
    return false;
  }
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// FNV-1a: the fingerprint only has to tell checkpoints apart, not resist anyone.
uint64_t Fnv(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// The first and last 4 KiB of a tensor.
uint64_t SampleTensor(const TensorView& t, uint64_t h) {
  if (t.data == nullptr) return Fnv("-", 1, h);
  const size_t bytes = t.NumBytes(), n = std::min<size_t>(bytes, 4096);
  h = Fnv(t.data, n, h);
  return Fnv(static_cast<const char*>(t.data) + bytes - n, n, h);
}

}  // namespace

const char* MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kConfig:
      return "config";
    case MessageType::kStep:
      return "step";
    case MessageType::kHeartbeat:
      return "heartbeat";
    case MessageType::kStop:
      return "stop";
  }
  return "?";
}

void EncodeHeader(const Header& header, char out[kHeaderBytes]) {
  Writer w;
  w.U32(kMagic);
  w.U32(static_cast<uint32_t>(header.type));
  w.U32(static_cast<uint32_t>(header.payload_bytes & 0xffffffffu));
  w.U32(static_cast<uint32_t>(static_cast<uint64_t>(header.payload_bytes) >> 32));
  const std::string bytes = w.Take();
  std::memcpy(out, bytes.data(), kHeaderBytes);
}

absl::StatusOr<Header> DecodeHeader(const char in[kHeaderBytes]) {
  Reader r(std::string_view(in, kHeaderBytes));
  uint32_t magic = 0, type = 0, lo = 0, hi = 0;
  r.U32(&magic);
  r.U32(&type);
  r.U32(&lo);
  r.U32(&hi);
  const uint64_t bytes = uint64_t{lo} | (uint64_t{hi} << 32);
  if (magic != kMagic || type < 1 || type > 4 || bytes > kMaxElements * 4) {
    return absl::DataLossError("the leader sent a message that is not a tokenmill step");
  }
  return Header{static_cast<MessageType>(type), static_cast<int64_t>(bytes)};
}

std::string EncodeGroupConfig(const GroupConfig& c) {
  Writer w;
  w.Str(c.backend);
  w.U32(c.use_nccl ? 1 : 0);
  w.Str(c.nccl_unique_id);
  w.I32(c.num_kv_blocks);
  w.I32(c.block_size);
  w.I32(c.max_num_tokens);
  w.I32(c.max_num_logits);
  w.Str(c.model);
  return w.Take();
}

absl::StatusOr<GroupConfig> DecodeGroupConfig(std::string_view bytes) {
  Reader r(bytes);
  GroupConfig c;
  uint32_t nccl = 0;
  r.Str(&c.backend);
  r.U32(&nccl);
  r.Str(&c.nccl_unique_id);
  r.I32(&c.num_kv_blocks);
  r.I32(&c.block_size);
  r.I32(&c.max_num_tokens);
  r.I32(&c.max_num_logits);
  r.Str(&c.model);
  TM_RETURN_IF_ERROR(r.Done("config"));
  c.use_nccl = nccl != 0;
  return c;
}

std::string ModelFingerprint(const LoadedModel& model) {
  const ModelConfig& c = model.config;
  uint64_t h = 14695981039346656037ull;
  h = SampleTensor(model.weights.tok_embd, h);
  h = SampleTensor(model.weights.output_norm, h);
  h = SampleTensor(model.weights.lm_head, h);
  for (const LayerWeights& l : model.weights.layers) {
    for (const TensorView* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      h = SampleTensor(*t, h);
    }
  }
  return absl::StrCat(c.name, " (", c.architecture, ") vocab=", c.vocab_size,
                      " hidden=", c.hidden_size, " ffn=", c.intermediate_size,
                      " layers=", c.num_layers, " heads=", c.num_heads, "/", c.num_kv_heads,
                      " head_dim=", c.head_dim, " weights=", absl::Hex(h, absl::kZeroPad16));
}

std::string EncodeStep(const BatchPlan& plan, std::span<const BlockCopy> copies) {
  Writer w;
  w.I32s(plan.token_ids);
  w.I32s(plan.positions);
  w.U32(static_cast<uint32_t>(plan.sequences.size()));
  for (const BatchSequence& s : plan.sequences) {
    w.I32(s.query_start);
    w.I32(s.num_query_tokens);
    w.I32(s.context_len);
    w.I32s(s.block_table);
  }
  w.I32s(plan.logits_rows);
  w.U32(static_cast<uint32_t>(copies.size()));
  for (const BlockCopy& c : copies) {
    w.I32(c.src);
    w.I32(c.dst);
  }
  return w.Take();
}

absl::Status DecodeStep(std::string_view bytes, BatchPlan* plan,
                        std::vector<std::pair<int32_t, int32_t>>* copies) {
  Reader r(bytes);
  r.I32s(&plan->token_ids);
  r.I32s(&plan->positions);
  uint32_t num_seqs = 0;
  plan->sequences.resize(r.Count(&num_seqs, 16) ? num_seqs : 0);
  for (BatchSequence& s : plan->sequences) {
    r.I32(&s.query_start);
    r.I32(&s.num_query_tokens);
    r.I32(&s.context_len);
    r.I32s(&s.block_table);
  }
  r.I32s(&plan->logits_rows);
  uint32_t num_copies = 0;
  copies->resize(r.Count(&num_copies, 8) ? num_copies : 0);
  for (auto& [src, dst] : *copies) {
    r.I32(&src);
    r.I32(&dst);
  }
  return r.Done("step");
}

}  // namespace tokenmill::wire
