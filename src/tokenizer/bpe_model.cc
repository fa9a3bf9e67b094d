#include "tokenizer/bpe_model.h"

#include <algorithm>
#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tokenizer/unicode.h"

namespace tokenmill::tokenizer_internal {

void Vocab::BuildIndex() {
  model_to_id.clear();
  model_to_id.reserve(model.size());
  for (size_t i = 0; i < model.size(); ++i) {
    // Empty: an id the model does not know (an added token past its vocabulary, a hole).
    if (!model[i].empty()) model_to_id[model[i]] = static_cast<int32_t>(i);
  }
}

namespace {

void FillFallbackIds(const Vocab& vocab, int32_t* ids) {
  for (int b = 0; b < 256; ++b) ids[b] = vocab.Find(absl::StrFormat("<0x%02X>", b));
}

constexpr std::string_view kMetaspace = "\u2581";

// SentencePiece-style models see a whole text segment as one word. When no token holds
// "▁" right after another character, no merge can cross the start of a "▁word", so
// encoding each "▁word" separately gives exactly the same ids in far less time (the
// merge heap stays small). Checked on the vocabulary, so it is exact, not a heuristic.
bool MetaspaceSplitIsExact(const Vocab& vocab) {
  if (vocab.Find(kMetaspace) < 0) return false;
  for (const std::string& t : vocab.model) {
    for (size_t p = t.find(kMetaspace, 1); p != std::string::npos; p = t.find(kMetaspace, p + 1)) {
      if (p < kMetaspace.size() ||
          t.compare(p - kMetaspace.size(), kMetaspace.size(), kMetaspace) != 0) {
        return false;
      }
    }
  }
  return true;
}

// Calls `f` on consecutive pieces of `word` that start at a "▁" following another
// character (the first piece starts at 0).
template <typename F>
void ForEachMetaspaceChunk(std::string_view word, F f) {
  size_t start = 0;
  for (size_t p = word.find(kMetaspace, 1); p != std::string_view::npos;
       p = word.find(kMetaspace, p + 1)) {
    if (p >= kMetaspace.size() &&
        word.substr(p - kMetaspace.size(), kMetaspace.size()) == kMetaspace) {
      continue;
    }
    f(word.substr(start, p - start));
    start = p;
  }
  f(word.substr(start));
}

constexpr size_t kMinSplitBytes = 64;  // below this one heap is cheaper than splitting

}  // namespace

BpeModel::BpeModel(const Vocab* vocab, BpeOptions options)
    : vocab_(vocab), options_(std::move(options)) {
  split_at_metaspace_ = !options_.byte_level && options_.continuing_subword_prefix.empty() &&
                        options_.end_of_word_suffix.empty() && MetaspaceSplitIsExact(*vocab_);
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    byte_ids_[b] = vocab_->Find(std::string_view(&c, 1));
  }
  FillFallbackIds(*vocab_, fallback_ids_);
}

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromMerges(
    const Vocab* vocab, const std::vector<std::pair<std::string, std::string>>& merges,
    BpeOptions options) {
  std::unique_ptr<BpeModel> m(new BpeModel(vocab, std::move(options)));
  const size_t prefix_len = m->options_.continuing_subword_prefix.size();
  m->merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const int32_t ida = vocab->Find(a), idb = vocab->Find(b);
    if (ida < 0 || idb < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", rank, " ('", a, "' '", b, "') names a token not in the vocab"));
    }
    joined = a;
    joined.append(b, std::min(prefix_len, b.size()));
    const int32_t idj = vocab->Find(joined);
    if (idj < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("merge ", rank, " ('", a, "' '", b, "') makes a token not in the vocab"));
    }
    // HF builds a map from the list, so a repeated pair keeps its last rank.
    m->merges_[Key(ida, idb)] = {static_cast<int32_t>(rank), idj};
  }
  return m;
}

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromRanks(const Vocab* vocab,
                                                              BpeOptions options) {
  std::unique_ptr<BpeModel> m(new BpeModel(vocab, std::move(options)));
  // Every part tiktoken ever holds is a token, so the pairs that can merge are exactly
  // the splits of each token into two tokens; the pair's rank is the whole's rank (id).
  for (int32_t id = 0; id < vocab->size(); ++id) {
    const std::string& t = vocab->model[id];
    for (size_t k = 1; k < t.size(); ++k) {
      const int32_t a = vocab->Find(std::string_view(t).substr(0, k));
      if (a < 0) continue;
      const int32_t b = vocab->Find(std::string_view(t).substr(k));
      if (b < 0) continue;
      m->merges_.try_emplace(Key(a, b), Merge{id, id});
    }
  }
  return m;
}

void BpeModel::InitialSymbols(std::string_view word, std::vector<int32_t>* ids) const {
  const bool affixes =
      !options_.continuing_subword_prefix.empty() || !options_.end_of_word_suffix.empty();
  if (options_.byte_level && !affixes) {
    for (unsigned char c : word) {
      if (byte_ids_[c] >= 0) {
        ids->push_back(byte_ids_[c]);
      } else if (options_.unk_id >= 0) {
        ids->push_back(options_.unk_id);
      }
    }
    return;
  }
  bool pending_unk = false;
  std::string unit;
  for (size_t i = 0; i < word.size();) {
    const size_t begin = i;
    if (options_.byte_level) {
      ++i;
    } else {
      NextCodepoint(word, &i);
    }
    std::string_view piece = word.substr(begin, i - begin);
    std::string_view key = piece;
    if (affixes) {
      unit.clear();
      if (begin != 0) unit += options_.continuing_subword_prefix;
      unit.append(piece);
      if (i == word.size()) unit += options_.end_of_word_suffix;
      key = unit;
    }
    const int32_t id = vocab_->Find(key);
    if (id >= 0) {
      if (pending_unk) ids->push_back(options_.unk_id);
      pending_unk = false;
      ids->push_back(id);
      continue;
    }
    if (options_.byte_fallback) {
      bool all = true;
      for (unsigned char c : key) all = all && fallback_ids_[c] >= 0;
      if (all) {
        // HF leaves a pending (fused) unk in place across byte-fallback characters.
        for (unsigned char c : key) ids->push_back(fallback_ids_[c]);
        continue;
      }
    }
    if (options_.unk_id >= 0) {
      if (pending_unk && !options_.fuse_unk) ids->push_back(options_.unk_id);
      pending_unk = true;
    }
  }
  if (pending_unk) ids->push_back(options_.unk_id);
}

void BpeModel::MergeAll(std::vector<int32_t>* ids) const {
  const int n = static_cast<int>(ids->size());
  if (n < 2 || merges_.empty()) return;
  struct Sym {
    int32_t id, prev, next;
  };
  struct Entry {
    int32_t rank, pos, new_id;
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<Sym> syms;
  thread_local std::vector<Entry> heap;
  syms.resize(n);
  heap.clear();
  for (int i = 0; i < n; ++i) syms[i] = {(*ids)[i], i - 1, i + 1 < n ? i + 1 : -1};
  auto push = [this](int pos, int32_t a, int32_t b) {
    auto it = merges_.find(Key(a, b));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, pos, it->second.new_id});
    std::push_heap(heap.begin(), heap.end(), std::greater<Entry>());
  };
  for (int i = 0; i + 1 < n; ++i) push(i, syms[i].id, syms[i + 1].id);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<Entry>());
    const Entry top = heap.back();
    heap.pop_back();
    Sym& left = syms[top.pos];
    if (left.id < 0 || left.next < 0) continue;
    Sym& right = syms[left.next];
    // A stale entry: the pair at `pos` changed since it was queued (HF's check).
    auto it = merges_.find(Key(left.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;
    left.id = top.new_id;
    right.id = -1;
    left.next = right.next;
    if (left.next >= 0) syms[left.next].prev = top.pos;
    if (left.prev >= 0) push(left.prev, syms[left.prev].id, left.id);
    if (left.next >= 0) push(top.pos, left.id, syms[left.next].id);
  }
  ids->clear();
  for (int i = 0; i >= 0; i = syms[i].next) ids->push_back(syms[i].id);
}

void BpeModel::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (const int32_t id = vocab_->Find(word); id >= 0) {
      out->push_back(id);
      return;
    }
  }
  if (split_at_metaspace_ && word.size() >= kMinSplitBytes) {
    ForEachMetaspaceChunk(word, [&](std::string_view chunk) { EncodeChunk(chunk, out); });
  } else {
    EncodeChunk(word, out);
  }
}

void BpeModel::EncodeChunk(std::string_view word, std::vector<int32_t>* out) const {
  thread_local std::vector<int32_t> ids;
  ids.clear();
  InitialSymbols(word, &ids);
  MergeAll(&ids);
  out->insert(out->end(), ids.begin(), ids.end());
}

SpmModel::SpmModel(const Vocab* vocab, std::vector<float> scores)
    : vocab_(vocab), scores_(std::move(scores)) {
  split_at_metaspace_ = MetaspaceSplitIsExact(*vocab_);
  FillFallbackIds(*vocab_, fallback_ids_);
  for (int b = 0; b < 256; ++b) {
    if (fallback_ids_[b] < 0) {
      const char c = static_cast<char>(b);
      fallback_ids_[b] = vocab_->Find(std::string_view(&c, 1));
    }
  }
}

void SpmModel::EncodeWord(std::string_view text, std::vector<int32_t>* out) const {
  if (split_at_metaspace_ && text.size() >= kMinSplitBytes) {
    ForEachMetaspaceChunk(text, [&](std::string_view chunk) { EncodeChunk(chunk, out); });
  } else {
    EncodeChunk(text, out);
  }
}

void SpmModel::EncodeChunk(std::string_view text, std::vector<int32_t>* out) const {
  struct Sym {
    int32_t prev, next;
    uint32_t offset, n;
  };
  struct Bigram {
    float score;
    int32_t left, right;
    uint32_t size;
  };
  // llama.cpp's llm_bigram_spm::comparator: best score first, then leftmost.
  auto worse = [](const Bigram& l, const Bigram& r) {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  };
  thread_local std::vector<Sym> syms;
  syms.clear();
  for (size_t offs = 0; offs < text.size();) {
    const uint32_t len = static_cast<uint32_t>(
        std::min<size_t>(Utf8SeqLen(static_cast<uint8_t>(text[offs])), text.size() - offs));
    const int32_t index = static_cast<int32_t>(syms.size());
    offs += len;
    syms.push_back(
        {index - 1, offs == text.size() ? -1 : index + 1, static_cast<uint32_t>(offs - len), len});
  }
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const std::string_view s = text.substr(syms[left].offset, syms[left].n + syms[right].n);
    const int32_t id = vocab_->Find(s);
    if (id < 0) return;
    queue.push({scores_[id], left, right, static_cast<uint32_t>(s.size())});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) try_add(i - 1, i);
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Sym& left = syms[b.left];
    Sym& right = syms[b.right];
    // llama.cpp's staleness test: a merged-away symbol or a changed total length.
    if (left.n == 0 || right.n == 0 || left.n + right.n != b.size) continue;
    left.n += right.n;
    right.n = 0;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = b.left;
    try_add(left.prev, b.left);
    try_add(b.left, left.next);
  }
  for (int32_t i = syms.empty() ? -1 : 0; i != -1; i = syms[i].next) {
    const std::string_view s = text.substr(syms[i].offset, syms[i].n);
    if (const int32_t id = vocab_->Find(s); id >= 0) {
      out->push_back(id);
      continue;
    }
    // Merged symbols are always tokens, so only single characters get here.
    for (unsigned char c : s) {
      if (fallback_ids_[c] >= 0) out->push_back(fallback_ids_[c]);
    }
  }
}

}  // namespace tokenmill::tokenizer_internal
