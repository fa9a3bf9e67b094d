// Jinja's builtin tests (`x is defined`, `x is string`, `x is equalto y`, ...), with
// Python's type rules: bool counts as a number, and Undefined is iterable (it iterates as
// empty), as jinja2.runtime.Undefined is.
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/py_text.h"
#include "tokenmill/core/status.h"

namespace tokenmill::jinja {
namespace {

template <bool (*kPredicate)(const Value&)>
absl::StatusOr<bool> Unary(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("test", args, {}));
  return kPredicate(v);
}

bool IsDefined(const Value& v) { return !v.is_undefined(); }
bool IsUndefined(const Value& v) { return v.is_undefined(); }
bool IsNone(const Value& v) { return v.is_none(); }
bool IsBoolean(const Value& v) { return v.is_bool(); }
bool IsTrue(const Value& v) { return v.is_bool() && v.as_bool(); }
bool IsFalse(const Value& v) { return v.is_bool() && !v.as_bool(); }
bool IsNumber(const Value& v) { return v.is_number(); }
bool IsInteger(const Value& v) { return v.is_int(); }
bool IsFloat(const Value& v) { return v.is_float(); }
bool IsString(const Value& v) { return v.is_string(); }
bool IsMapping(const Value& v) { return v.is_dict(); }
bool IsCallable(const Value& v) { return v.is_callable(); }
bool IsEscaped(const Value&) { return false; }  // no autoescape, so nothing is Markup
bool IsIterable(const Value& v) {
  return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
}
bool IsSequence(const Value& v) { return IsIterable(v); }
bool IsLower(const Value& v) {
  const std::string s = ToStr(v);
  return PyLower(s) == s && PyUpper(s) != s;
}
bool IsUpper(const Value& v) {
  const std::string s = ToStr(v);
  return PyUpper(s) == s && PyLower(s) != s;
}

absl::StatusOr<int64_t> IntOperand(const Value& v, const std::string& test) {
  if (!v.is_int() && !v.is_bool()) {
    if (v.is_undefined()) return UndefinedError(v);
    return absl::InvalidArgumentError(
        absl::StrCat("test '", test, "' needs an integer, got ", TypeName(v)));
  }
  return v.as_int();
}

absl::StatusOr<bool> IsEven(Renderer&, const Value& v, CallArgs&) {
  TM_ASSIGN_OR_RETURN(int64_t i, IntOperand(v, "even"));
  return i % 2 == 0;
}
absl::StatusOr<bool> IsOdd(Renderer&, const Value& v, CallArgs&) {
  TM_ASSIGN_OR_RETURN(int64_t i, IntOperand(v, "odd"));
  return i % 2 != 0;
}

absl::StatusOr<bool> DivisibleBy(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("divisibleby", args, {"num"}));
  TM_ASSIGN_OR_RETURN(int64_t x, IntOperand(v, "divisibleby"));
  TM_ASSIGN_OR_RETURN(int64_t n, IntOperand(a[0], "divisibleby"));
  if (n == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
  return x % n == 0;
}

// eq / ne / lt / le / gt / ge, with Python's TypeError for unordered comparisons.
template <int kOp>
absl::StatusOr<bool> CompareTest(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("compare", args, {"other"}));
  const Value& other = a[0];
  switch (kOp) {
    case 0:
      return Equals(v, other);
    case 1:
      return !Equals(v, other);
    case 2:
      return LessThan(v, other);
    case 3: {
      TM_ASSIGN_OR_RETURN(bool gt, LessThan(other, v));
      return !gt;
    }
    case 4:
      return LessThan(other, v);
    default: {
      TM_ASSIGN_OR_RETURN(bool lt, LessThan(v, other));
      return !lt;
    }
  }
}

absl::StatusOr<bool> SameAs(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("sameas", args, {"other"}));
  const Value& other = a[0];
  if (v.kind() != other.kind()) return false;
  switch (v.kind()) {
    case Value::Kind::kList:
      return &v.as_list() == &other.as_list();
    case Value::Kind::kDict:
      return &v.as_dict() == &other.as_dict();
    default:
      return Equals(v, other);  // None/True/False/small values are singletons
  }
}

absl::StatusOr<bool> In(Renderer&, const Value& v, CallArgs& args) {
  TM_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("in", args, {"seq"}));
  return Contains(a[0], v);
}

absl::StatusOr<bool> FilterExists(Renderer&, const Value& v, CallArgs&) {
  return v.is_string() && FindFilter(v.as_string()) != nullptr;
}
absl::StatusOr<bool> TestExists(Renderer&, const Value& v, CallArgs&) {
  return v.is_string() && FindTest(v.as_string()) != nullptr;
}

}  // namespace

const TestFn* FindTest(const std::string& name) {
  static const auto* table = new absl::flat_hash_map<std::string, TestFn>{
      {"boolean", Unary<IsBoolean>},
      {"callable", Unary<IsCallable>},
      {"defined", Unary<IsDefined>},
      {"divisibleby", DivisibleBy},
      {"eq", CompareTest<0>},
      {"equalto", CompareTest<0>},
      {"==", CompareTest<0>},
      {"escaped", Unary<IsEscaped>},
      {"even", IsEven},
      {"false", Unary<IsFalse>},
      {"filter", FilterExists},
      {"float", Unary<IsFloat>},
      {"ge", CompareTest<5>},
      {">=", CompareTest<5>},
      {"gt", CompareTest<4>},
      {">", CompareTest<4>},
      {"greaterthan", CompareTest<4>},
      {"in", In},
      {"integer", Unary<IsInteger>},
      {"iterable", Unary<IsIterable>},
      {"le", CompareTest<3>},
      {"<=", CompareTest<3>},
      {"lower", Unary<IsLower>},
      {"lt", CompareTest<2>},
      {"<", CompareTest<2>},
      {"lessthan", CompareTest<2>},
      {"mapping", Unary<IsMapping>},
      {"ne", CompareTest<1>},
      {"!=", CompareTest<1>},
      {"none", Unary<IsNone>},
      {"number", Unary<IsNumber>},
      {"odd", IsOdd},
      {"sameas", SameAs},
      {"sequence", Unary<IsSequence>},
      {"string", Unary<IsString>},
      {"test", TestExists},
      {"true", Unary<IsTrue>},
      {"undefined", Unary<IsUndefined>},
      {"upper", Unary<IsUpper>},
  };
  const auto it = table->find(name);
  return it == table->end() ? nullptr : &it->second;
}

}  // namespace tokenmill::jinja
