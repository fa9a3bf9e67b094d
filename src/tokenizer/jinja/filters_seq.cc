// Jinja's builtin filters over sequences and mappings: length, first/last, join, map,
// select/reject(attr), sort, dictsort, unique, min/max, sum, items, list, reverse, batch.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/filters_internal.h"
#include "tokenizer/jinja/py_text.h"
#include "tokenmill/core/status.h"

namespace tokenmill::jinja {
namespace {

// jinja2.filters.make_attrgetter: "a.b.0" reads item a, then b, then index 0.
absl::StatusOr<Value> ReadAttributePath(const Value& item, const std::string& path) {
  Value current = item;
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    if (current.is_undefined()) return UndefinedError(current);
    const std::string key(part);
    const bool is_index = !key.empty() && std::all_of(key.begin(), key.end(), ::isdigit);
    TM_ASSIGN_OR_RETURN(current,
                        GetItem(current, is_index ? Value::Int(std::stoll(key)) : Value::Str(key)));
  }
  return current;
}

// Sort key: the (optionally attribute-selected) value, lower-cased unless case-sensitive.
absl::StatusOr<Value> SortKey(const Value& item, const Value& attribute, bool case_sensitive) {
  Value key = item;
  if (!attribute.is_undefined() && !attribute.is_none()) {
    TM_ASSIGN_OR_RETURN(key, ReadAttributePath(item, ToStr(attribute)));
  }
  if (!case_sensitive && key.is_string()) return Value::Str(PyLower(key.as_string()));
  return key;
}

// Stable sort by precomputed keys; the first comparison error aborts the sort.
absl::Status SortByKeys(std::vector<std::pair<Value, Value>>* keyed, bool reverse) {
  absl::Status error;
  std::stable_sort(keyed->begin(), keyed->end(), [&](const auto& x, const auto& y) {
    if (!error.ok()) return false;
    absl::StatusOr<bool> less = reverse ? LessThan(y.first, x.first) : LessThan(x.first, y.first);
    if (!less.ok()) {
      error = less.status();
      return false;
    }
    return *less;
  });
  return error;
}

absl::StatusOr<Value> SelectOrReject(Renderer& renderer, const Value& v, CallArgs& args,
                                     bool select, bool by_attribute) {
  TM_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  size_t next = 0;
  std::string attribute;
  if (by_attribute) {
    if (args.positional.empty()) return absl::InvalidArgumentError("missing attribute name");
    attribute = ToStr(args.positional[next++]);
  }
  std::string test;
  if (next < args.positional.size()) test = ToStr(args.positional[next++]);
  CallArgs test_args;
  test_args.positional.assign(args.positional.begin() + static_cast<ptrdiff_t>(next),
                              args.positional.end());
  test_args.keyword = args.keyword;
  std::vector<Value> kept;
  for (const Value& item : items) {
    Value probe = item;
    if (by_attribute) {
      TM_ASSIGN_OR_RETURN(probe, ReadAttributePath(item, attribute));
    }
    bool passed = false;
    if (test.empty()) {
      passed = Truthy(probe);
    } else {
      CallArgs call_args = test_args;
      TM_ASSIGN_OR_RETURN(passed, renderer.ApplyTest(test, probe, call_args));
    }
    if (passed == select) kept.push_back(item);
  }
  return Value::MakeList(std::move(kept));
}

absl::StatusOr<Value> MinOrMax(const Value& v, CallArgs& args, bool want_max) {
  TM_ASSIGN_OR_RETURN(BoundArgs a,
                      BoundArgs::Bind("min/max", args, {"case_sensitive", "attribute"}));
  TM_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  if (items.empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  const bool case_sensitive = a.has(0) && Truthy(a[0]);
  size_t best = 0;
  TM_ASSIGN_OR_RETURN(Value best_key, SortKey(items[0], a[1], case_sensitive));
  for (size_t i = 1; i < items.size(); ++i) {
    TM_ASSIGN_OR_RETURN(Value key, SortKey(items[i], a[1], case_sensitive));
    TM_ASSIGN_OR_RETURN(bool better, want_max ? LessThan(best_key, key) : LessThan(key, best_key));
    if (better) {
      best = i;
      best_key = key;
    }
  }
  return items[best];
}

}  // namespace

absl::StatusOr<Value> Length(Renderer&, const Value& v, CallArgs&) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return Value::Int(0);
    case Value::Kind::kString:
      return Value::Int(CodepointLength(v.as_string()));
    case Value::Kind::kList:
      return Value::Int(static_cast<int64_t>(v.as_list().items.size()));
    case Value::Kind::kDict:
      return Value::Int(static_cast<int64_t>(v.as_dict().size()));
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("object of type '", TypeName(v), "' has no len()"));
  }
}

absl::StatusOr<Value> First(Renderer&, const Value& v, CallArgs&) {
  TM_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  if (items.empty()) return Value::Undefined("No first item, sequence was empty.");
  return items.front();
}

absl::StatusOr<Value> Last(Renderer&, const Value& v, CallArgs&) {
  TM_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  if (items.empty()) return Value::Undefined("No last item, sequence was empty.");
  return items.back();
}

absl::StatusOr<Value> ListFilter(Renderer&, const Value& v, CallArgs&) {
  TM_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  return Value::MakeList(std::move(items));
}

absl::StatusOr<Value> Items(Renderer&, const Value& v, CallArgs&) {
  if (v.is_undefined()) return Value::MakeList({});
  if (!v.is_dict()) return absl::InvalidArgumentError("Can only get item pairs from a mapping.");
  std::vector<Value> pairs;
  for (const auto& [k, item] : v.as_dict().items()) {
    pairs.push_back(Value::MakeList({k, item}, /*is_tuple=*/true));
  }
  return Value::MakeList(std::move(pairs));
}

absl::StatusOr<Value> JoinFilter(Renderer& renderer, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("join", args, {"d", "attribute"}));
  TM_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  const std::string sep = a.has(0) ? ToStr(a[0]) : "";
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (a.has(1) && !a[1].is_none()) {
      TM_ASSIGN_OR_RETURN(item, ReadAttributePath(item, ToStr(a[1])));
    }
    if (i > 0) out += sep;
    out += ToStr(item);
    TM_RETURN_IF_ERROR(renderer.CheckSize(out.size()));
  }
  return Value::Str(std::move(out));
}

absl::StatusOr<Value> Map(Renderer& renderer, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  std::vector<Value> out;
  out.reserve(items.size());
  if (args.positional.empty()) {
    TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("map", args, {"attribute", "default"}));
    if (!a.has(0)) return absl::InvalidArgumentError("map() needs a filter name or attribute=");
    for (const Value& item : items) {
      TM_ASSIGN_OR_RETURN(Value mapped, ReadAttributePath(item, ToStr(a[0])));
      if (mapped.is_undefined() && a.has(1)) mapped = a[1];
      out.push_back(std::move(mapped));
    }
    return Value::MakeList(std::move(out));
  }
  const std::string filter = ToStr(args.positional[0]);
  CallArgs filter_args;
  filter_args.positional.assign(args.positional.begin() + 1, args.positional.end());
  filter_args.keyword = args.keyword;
  for (const Value& item : items) {
    CallArgs call_args = filter_args;
    TM_ASSIGN_OR_RETURN(Value mapped, renderer.ApplyFilter(filter, item, call_args));
    out.push_back(std::move(mapped));
  }
  return Value::MakeList(std::move(out));
}

absl::StatusOr<Value> Select(Renderer& r, const Value& v, CallArgs& args) {
  return SelectOrReject(r, v, args, /*select=*/true, /*by_attribute=*/false);
}
absl::StatusOr<Value> Reject(Renderer& r, const Value& v, CallArgs& args) {
  return SelectOrReject(r, v, args, /*select=*/false, /*by_attribute=*/false);
}
absl::StatusOr<Value> SelectAttr(Renderer& r, const Value& v, CallArgs& args) {
  return SelectOrReject(r, v, args, /*select=*/true, /*by_attribute=*/true);
}
absl::StatusOr<Value> RejectAttr(Renderer& r, const Value& v, CallArgs& args) {
  return SelectOrReject(r, v, args, /*select=*/false, /*by_attribute=*/true);
}

absl::StatusOr<Value> Sort(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a,
                      BoundArgs::Bind("sort", args, {"reverse", "case_sensitive", "attribute"}));
  TM_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  const bool case_sensitive = a.has(1) && Truthy(a[1]);
  std::vector<std::string> attributes;
  if (a.has(2) && !a[2].is_none()) attributes = absl::StrSplit(ToStr(a[2]), ',');
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& item : items) {
    std::vector<Value> parts;
    for (const std::string& attribute : attributes) {
      TM_ASSIGN_OR_RETURN(Value part, SortKey(item, Value::Str(attribute), case_sensitive));
      parts.push_back(std::move(part));
    }
    Value key;
    if (attributes.empty()) {
      TM_ASSIGN_OR_RETURN(key, SortKey(item, Value(), case_sensitive));
    } else {
      key = parts.size() == 1 ? parts[0] : Value::MakeList(std::move(parts), true);
    }
    keyed.emplace_back(std::move(key), std::move(item));
  }
  TM_RETURN_IF_ERROR(SortByKeys(&keyed, a.has(0) && Truthy(a[0])));
  std::vector<Value> out;
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return Value::MakeList(std::move(out));
}

absl::StatusOr<Value> DictSort(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a,
                      BoundArgs::Bind("dictsort", args, {"case_sensitive", "by", "reverse"}));
  if (!v.is_dict()) return absl::InvalidArgumentError("dictsort expects a mapping");
  const bool by_value = a.has(1) && ToStr(a[1]) == "value";
  const bool case_sensitive = a.has(0) && Truthy(a[0]);
  std::vector<std::pair<Value, Value>> keyed;
  for (const auto& [k, item] : v.as_dict().items()) {
    TM_ASSIGN_OR_RETURN(Value key, SortKey(by_value ? item : k, Value(), case_sensitive));
    keyed.emplace_back(std::move(key), Value::MakeList({k, item}, /*is_tuple=*/true));
  }
  TM_RETURN_IF_ERROR(SortByKeys(&keyed, a.has(2) && Truthy(a[2])));
  std::vector<Value> out;
  for (auto& [key, pair] : keyed) out.push_back(std::move(pair));
  return Value::MakeList(std::move(out));
}

absl::StatusOr<Value> Unique(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a,
                      BoundArgs::Bind("unique", args, {"case_sensitive", "attribute"}));
  TM_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  std::vector<Value> seen;
  std::vector<Value> out;
  for (const Value& item : items) {
    TM_ASSIGN_OR_RETURN(Value key, SortKey(item, a[1], a.has(0) && Truthy(a[0])));
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return Equals(s, key); })) {
      continue;
    }
    seen.push_back(std::move(key));
    out.push_back(item);
  }
  return Value::MakeList(std::move(out));
}

absl::StatusOr<Value> Min(Renderer&, const Value& v, CallArgs& args) {
  return MinOrMax(v, args, /*want_max=*/false);
}
absl::StatusOr<Value> Max(Renderer&, const Value& v, CallArgs& args) {
  return MinOrMax(v, args, /*want_max=*/true);
}

absl::StatusOr<Value> Sum(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("sum", args, {"attribute", "start"}));
  TM_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  Value total = a.has(1) ? a[1] : Value::Int(0);
  for (const Value& raw : items) {
    Value item = raw;
    if (a.has(0) && !a[0].is_none()) {
      TM_ASSIGN_OR_RETURN(item, ReadAttributePath(raw, ToStr(a[0])));
    }
    if (!item.is_number() || !total.is_number()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unsupported operand type(s) for +: '", TypeName(total), "' and '", TypeName(item), "'"));
    }
    if (item.is_float() || total.is_float()) {
      total = Value::Float(total.as_float() + item.as_float());
    } else {
      int64_t sum = 0;
      if (__builtin_add_overflow(total.as_int(), item.as_int(), &sum)) {
        return absl::OutOfRangeError("integer overflow in sum");
      }
      total = Value::Int(sum);
    }
  }
  return total;
}

absl::StatusOr<Value> Reverse(Renderer&, const Value& v, CallArgs&) {
  if (v.is_string()) {
    std::u32string cps = DecodeUtf8(v.as_string());
    std::reverse(cps.begin(), cps.end());
    return Value::Str(EncodeUtf8(cps));
  }
  TM_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  std::reverse(items.begin(), items.end());
  return Value::MakeList(std::move(items));
}

absl::StatusOr<Value> Batch(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("batch", args, {"linecount", "fill_with"}));
  TM_ASSIGN_OR_RETURN(int64_t size, ToInt(a[0], "batch"));
  if (size <= 0) return absl::InvalidArgumentError("batch size must be positive");
  TM_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(v));
  std::vector<Value> batches;
  for (size_t i = 0; i < items.size(); i += static_cast<size_t>(size)) {
    std::vector<Value> batch(items.begin() + static_cast<ptrdiff_t>(i),
                             items.begin() + static_cast<ptrdiff_t>(std::min(
                                                 items.size(), i + static_cast<size_t>(size))));
    if (a.has(1) && !a[1].is_none()) {
      while (batch.size() < static_cast<size_t>(size)) batch.push_back(a[1]);
    }
    batches.push_back(Value::MakeList(std::move(batch)));
  }
  return Value::MakeList(std::move(batches));
}

}  // namespace tokenmill::jinja
