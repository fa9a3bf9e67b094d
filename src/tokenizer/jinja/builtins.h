// Jinja's builtin filters, tests and globals, Python's str/dict/list methods, and the
// sandboxed attribute and item lookup rules (jinja2.sandbox.ImmutableSandboxedEnvironment:
// methods that mutate lists or dicts are refused).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/jinja/renderer.h"
#include "tokenizer/jinja/value.h"

namespace tokenmill::jinja {

// Binds call arguments to a Python-style signature of parameter names.
class BoundArgs {
 public:
  // InvalidArgument for too many positionals, unknown or repeated keywords.
  static absl::StatusOr<BoundArgs> Bind(const std::string& function, const CallArgs& args,
                                        const std::vector<std::string>& names);
  bool has(size_t i) const { return present_[i]; }
  // The bound value, or Undefined when the caller omitted it.
  const Value& operator[](size_t i) const { return values_[i]; }

 private:
  std::vector<Value> values_;
  std::vector<bool> present_;
};

using FilterFn = absl::StatusOr<Value> (*)(Renderer&, const Value& input, CallArgs& args);
using TestFn = absl::StatusOr<bool> (*)(Renderer&, const Value& input, CallArgs& args);
const FilterFn* FindFilter(const std::string& name);  // null when unknown
const TestFn* FindTest(const std::string& name);

// obj.name: a method or attribute first, then obj[name]; Undefined when neither exists.
// Requires: obj is not Undefined (the caller raises UndefinedError).
absl::StatusOr<Value> GetAttr(const Value& obj, const std::string& name);
// obj[key]: the item first, then a string key as an attribute; Undefined when missing.
absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
// A str/dict/list method bound to obj, if obj's type has one by that name.
std::optional<Value> FindMethod(const Value& obj, const std::string& name);
// list(v): items of a list, keys of a dict, characters of a string, nothing for Undefined.
absl::StatusOr<std::vector<Value>> Iterate(const Value& v);
// `item in container`.
absl::StatusOr<bool> Contains(const Value& container, const Value& item);
// Python int(...) of a value (bools, floats truncate); InvalidArgument otherwise.
absl::StatusOr<int64_t> ToInt(const Value& v, const std::string& what);

// Defines range, dict, namespace, cycler, joiner, raise_exception and strftime_now.
// `strftime` formats the injected "now" with a strftime format string.
void AddGlobals(Scope& scope, std::function<std::string(const std::string&)> strftime);

}  // namespace tokenmill::jinja
