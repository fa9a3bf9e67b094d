// The value model of the Jinja interpreter: Python's None/bool/int/float/str/list/tuple/
// dict plus Jinja's Undefined, callables (macros, globals, bound methods) and attribute
// objects (namespace(), loop). Lists and dicts are immutable once built and shared by
// pointer (HF renders in an ImmutableSandboxedEnvironment, so templates cannot mutate
// them); only Object (namespace) is mutable. Values are cheap to copy.
// Thread-safety: a Value may be read from several threads; Objects are not synchronized.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace tokenmill::jinja {

class Value;
class Renderer;

struct List {
  std::vector<Value> items;
  bool is_tuple = false;  // only changes repr(): (1, 2) instead of [1, 2]
  int depth = 1;          // containers nested inside, itself included
};

// Insertion-ordered dict (Python 3.7+ order, which tojson and items() expose).
class Dict {
 public:
  const Value* Find(const Value& key) const;
  const Value* FindString(const std::string& key) const;
  // Inserts, or replaces the value in place (keeping the key's position).
  void Set(Value key, Value value);
  size_t size() const;  // defined below: Value must be complete first
  const std::vector<std::pair<Value, Value>>& items() const { return items_; }
  int depth() const { return depth_; }  // containers nested inside, itself included

 private:
  friend class Value;
  int depth_ = 1;
  std::vector<std::pair<Value, Value>> items_;
  absl::flat_hash_map<std::string, size_t> string_index_;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

using NativeFunction = std::function<absl::StatusOr<Value>(Renderer&, CallArgs&)>;
struct Callable {
  std::string name;
  NativeFunction fn;
};

// Something with named attributes that is neither a dict nor a list.
class Object {
 public:
  virtual ~Object() = default;
  virtual std::string TypeName() const = 0;
  // Undefined when the attribute does not exist.
  virtual Value GetAttr(const std::string& name) const = 0;
  // Only namespace() objects accept assignment; others return an error.
  virtual absl::Status SetAttr(const std::string& name, Value value);
  virtual std::string Repr() const;
  // Containers nested inside, itself included (bounded to keep recursion shallow).
  virtual int depth() const { return 1; }
};

class Value {
 public:
  enum class Kind {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kCallable,
    kObject
  };

  Value() : data_(UndefinedData{}) {}  // Undefined without a hint
  // `message` is the error raised when the undefined value is used: "'x' is undefined".
  static Value Undefined(std::string message);
  static Value None() { return Value(InitTag{}, NoneData{}); }
  static Value Bool(bool b) { return Value(InitTag{}, b); }
  static Value Int(int64_t i) { return Value(InitTag{}, i); }
  static Value Float(double d) { return Value(InitTag{}, d); }
  static Value Str(std::string s);
  static Value MakeList(std::vector<Value> items, bool is_tuple = false);
  static Value MakeDict(Dict dict);
  static Value MakeCallable(std::string name, NativeFunction fn);
  static Value MakeObject(std::shared_ptr<Object> object);

  Kind kind() const { return static_cast<Kind>(data_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  // Python numbers: bool is an int subclass.
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_list() const { return kind() == Kind::kList; }
  bool is_dict() const { return kind() == Kind::kDict; }
  bool is_callable() const { return kind() == Kind::kCallable; }
  bool is_object() const { return kind() == Kind::kObject; }

  // Accessors; Requires: the matching kind (TM_CHECKed).
  bool as_bool() const;
  int64_t as_int() const;   // bools read as 0/1
  double as_float() const;  // ints and bools convert
  const std::string& as_string() const;
  const List& as_list() const;
  const Dict& as_dict() const;
  const Callable& as_callable() const;
  Object& as_object() const;
  // The error message of an Undefined ("" for a plain undefined).
  const std::string& undefined_message() const;

 private:
  struct UndefinedData {
    std::shared_ptr<const std::string> message;
  };
  struct NoneData {};
  using Data = std::variant<UndefinedData, NoneData, bool, int64_t, double,
                            std::shared_ptr<const std::string>, std::shared_ptr<const List>,
                            std::shared_ptr<const Dict>, std::shared_ptr<const Callable>,
                            std::shared_ptr<Object>>;
  struct InitTag {};
  template <typename T>
  Value(InitTag, T&& data) : data_(std::forward<T>(data)) {}

  Data data_;
};

inline size_t Dict::size() const { return items_.size(); }

// Nesting depth of containers (0 for scalars). The renderer refuses to store values
// deeper than kMaxValueDepth, so repr, ==, json and destruction recurse boundedly.
inline constexpr int kMaxValueDepth = 1000;
int Depth(const Value& v);

// Python semantics.
bool Truthy(const Value& v);
bool Equals(const Value& a, const Value& b);
// a < b as Python orders numbers, strings (by code point), lists and tuples;
// InvalidArgument (Python's TypeError) for other pairs.
absl::StatusOr<bool> LessThan(const Value& a, const Value& b);
std::string ToStr(const Value& v);     // str(v); Undefined renders as ""
std::string Repr(const Value& v);      // repr(v)
std::string TypeName(const Value& v);  // 'str', 'int', 'NoneType', 'dict', ...
// The Status for using an Undefined where Python raises UndefinedError.
absl::Status UndefinedError(const Value& undefined);

}  // namespace tokenmill::jinja
