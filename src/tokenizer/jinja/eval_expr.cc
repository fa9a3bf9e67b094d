// Expression evaluation with Python's operator semantics and jinja2's Undefined rules:
// an undefined value renders as "" and is falsy, but arithmetic, attribute access, calls
// and ordering on it raise UndefinedError.
#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/filters_internal.h"
#include "tokenizer/jinja/py_text.h"
#include "tokenizer/jinja/renderer.h"
#include "tokenmill/core/status.h"

namespace tokenmill::jinja {
namespace {

absl::Status TypeError(const std::string& op, const Value& a, const Value& b) {
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  if (op == "+" && a.is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("can only concatenate str (not \"", TypeName(b), "\") to str"));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported operand type(s) for ", op, ": '",
                                                 TypeName(a), "' and '", TypeName(b), "'"));
}

absl::StatusOr<Value> IntArithmetic(const std::string& op, int64_t x, int64_t y) {
  int64_t r = 0;
  if (op == "+" && !__builtin_add_overflow(x, y, &r)) return Value::Int(r);
  if (op == "-" && !__builtin_sub_overflow(x, y, &r)) return Value::Int(r);
  if (op == "*" && !__builtin_mul_overflow(x, y, &r)) return Value::Int(r);
  if (op == "//" || op == "%") {
    if (y == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
    if (x == std::numeric_limits<int64_t>::min() && y == -1) {
      return absl::OutOfRangeError("integer overflow");
    }
    int64_t q = x / y;
    int64_t m = x % y;
    if (m != 0 && ((m < 0) != (y < 0))) {  // Python floors toward negative infinity
      --q;
      m += y;
    }
    return Value::Int(op == "//" ? q : m);
  }
  if (op == "**") {
    if (y < 0) return Value::Float(std::pow(static_cast<double>(x), static_cast<double>(y)));
    int64_t result = 1;
    for (int64_t i = 0; i < y; ++i) {
      if (__builtin_mul_overflow(result, x, &result)) {
        return absl::OutOfRangeError("integer overflow in **");
      }
      if (result == 0 || result == 1) break;
    }
    return Value::Int(result);
  }
  return absl::OutOfRangeError(absl::StrCat("integer overflow in ", op));
}

absl::StatusOr<Value> FloatArithmetic(const std::string& op, double x, double y) {
  if (op == "+") return Value::Float(x + y);
  if (op == "-") return Value::Float(x - y);
  if (op == "*") return Value::Float(x * y);
  if (op == "**") return Value::Float(std::pow(x, y));
  if (y == 0) return absl::InvalidArgumentError("float division by zero");
  if (op == "/") return Value::Float(x / y);
  const double m = std::fmod(x, y);
  const double mod = (m != 0 && ((m < 0) != (y < 0))) ? m + y : m;
  if (op == "%") return Value::Float(mod);
  return Value::Float(std::floor((x - mod) / y + 0.5));  // "//" without rounding error
}

}  // namespace

absl::StatusOr<Value> PercentFormat(const std::string& format, const Value& args) {
  std::vector<Value> values;
  if (args.is_list() && args.as_list().is_tuple) {
    values = args.as_list().items;
  } else {
    values.push_back(args);
  }
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out.push_back(format[i]);
      continue;
    }
    if (++i >= format.size()) return absl::InvalidArgumentError("incomplete format");
    const char spec = format[i];
    if (spec == '%') {
      out.push_back('%');
      continue;
    }
    if (next >= values.size()) {
      return absl::InvalidArgumentError("not enough arguments for format string");
    }
    const Value& v = values[next++];
    if (spec == 's') {
      out += ToStr(v);
    } else if (spec == 'r') {
      out += Repr(v);
    } else if ((spec == 'd' || spec == 'i') && v.is_number()) {
      out += std::to_string(v.is_float() ? static_cast<int64_t>(v.as_float()) : v.as_int());
    } else if (spec == 'f' && v.is_number()) {
      out += absl::StrFormat("%f", v.as_float());
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported format character '", std::string(1, spec), "'"));
    }
  }
  if (next < values.size()) {
    return absl::InvalidArgumentError("not all arguments converted during string formatting");
  }
  return Value::Str(std::move(out));
}

absl::StatusOr<Value> Renderer::EvalBinary(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string s = ToStr(a);
    s += ToStr(b);
    TM_RETURN_IF_ERROR(CheckSize(s.size()));
    return Value::Str(std::move(s));
  }
  if (a.is_number() && b.is_number()) {
    if (op == "/") {
      if (b.as_float() == 0) return absl::InvalidArgumentError("division by zero");
      return Value::Float(a.as_float() / b.as_float());
    }
    if (a.is_float() || b.is_float()) return FloatArithmetic(op, a.as_float(), b.as_float());
    return IntArithmetic(op, a.as_int(), b.as_int());
  }
  if (op == "+" && a.is_string() && b.is_string()) {
    TM_RETURN_IF_ERROR(CheckSize(a.as_string().size() + b.as_string().size()));
    return Value::Str(a.as_string() + b.as_string());
  }
  if (op == "+" && a.is_list() && b.is_list() && a.as_list().is_tuple == b.as_list().is_tuple) {
    TM_RETURN_IF_ERROR(CheckSize(a.as_list().items.size() + b.as_list().items.size()));
    std::vector<Value> items = a.as_list().items;
    items.insert(items.end(), b.as_list().items.begin(), b.as_list().items.end());
    return Value::MakeList(std::move(items), a.as_list().is_tuple);
  }
  if (op == "*" && (a.is_string() || a.is_list() || b.is_string() || b.is_list())) {
    const Value& seq = (a.is_string() || a.is_list()) ? a : b;
    const Value& count = (a.is_string() || a.is_list()) ? b : a;
    if (!count.is_int() && !count.is_bool()) return TypeError(op, a, b);
    const int64_t n = std::max<int64_t>(0, count.as_int());
    const size_t unit = seq.is_string() ? seq.as_string().size() : seq.as_list().items.size();
    if (unit != 0 && static_cast<uint64_t>(n) > limits_.max_output_bytes / unit) {
      return CheckSize(limits_.max_output_bytes + 1);
    }
    if (seq.is_string()) {
      std::string out;
      for (int64_t i = 0; i < n; ++i) out += seq.as_string();
      return Value::Str(std::move(out));
    }
    std::vector<Value> items;
    for (int64_t i = 0; i < n; ++i) {
      items.insert(items.end(), seq.as_list().items.begin(), seq.as_list().items.end());
    }
    return Value::MakeList(std::move(items), seq.as_list().is_tuple);
  }
  if (op == "%" && a.is_string()) return PercentFormat(a.as_string(), b);
  return TypeError(op, a, b);
}

absl::StatusOr<Value> Renderer::EvalCompare(const Expr& expr, const ScopePtr& scope) {
  TM_ASSIGN_OR_RETURN(Value left, Eval(*expr.children[0], scope));
  for (size_t i = 0; i < expr.ops.size(); ++i) {
    TM_ASSIGN_OR_RETURN(Value right, Eval(*expr.children[i + 1], scope));
    const std::string& op = expr.ops[i];
    bool result = false;
    if (op == "==" || op == "!=") {
      result = Equals(left, right) == (op == "==");
    } else if (op == "in" || op == "notin") {
      TM_ASSIGN_OR_RETURN(bool found, Contains(right, left));
      result = found == (op == "in");
    } else if (op == "<") {
      TM_ASSIGN_OR_RETURN(result, LessThan(left, right));
    } else if (op == ">") {
      TM_ASSIGN_OR_RETURN(result, LessThan(right, left));
    } else {  // <= and >=: not (b < a), with Python's TypeError for unordered types
      const bool le = op == "<=";
      TM_ASSIGN_OR_RETURN(bool strict, le ? LessThan(right, left) : LessThan(left, right));
      result = !strict;
    }
    if (!result) return Value::Bool(false);
    left = std::move(right);
  }
  return Value::Bool(true);
}

absl::StatusOr<Value> Renderer::EvalSlice(const Expr& expr, const ScopePtr& scope) {
  TM_ASSIGN_OR_RETURN(Value obj, Eval(*expr.children[0], scope));
  if (obj.is_undefined()) return UndefinedError(obj);
  int64_t bounds[3] = {0, 0, 1};
  bool given[3] = {false, false, false};
  for (int k = 0; k < 3; ++k) {
    if (!expr.children[k + 1]) continue;
    TM_ASSIGN_OR_RETURN(Value v, Eval(*expr.children[k + 1], scope));
    if (v.is_none()) continue;
    if (!v.is_int() && !v.is_bool()) {
      return absl::InvalidArgumentError(
          "slice indices must be integers or None or have an __index__ method");
    }
    bounds[k] = v.as_int();
    given[k] = true;
  }
  const int64_t step = bounds[2];
  if (step == 0) return absl::InvalidArgumentError("slice step cannot be zero");
  if (!obj.is_string() && !obj.is_list()) {
    return Value::Undefined(absl::StrCat("'", TypeName(obj), " object' is not subscriptable"));
  }
  const std::u32string cps = obj.is_string() ? DecodeUtf8(obj.as_string()) : std::u32string();
  const auto n = static_cast<int64_t>(obj.is_string() ? cps.size() : obj.as_list().items.size());
  auto clamp = [&](int64_t v, bool is_given, int64_t fallback) {
    if (!is_given) return fallback;
    if (v < 0) v += n;
    if (step > 0) return std::clamp<int64_t>(v, 0, n);
    return std::clamp<int64_t>(v, -1, n - 1);
  };
  const int64_t start = clamp(bounds[0], given[0], step > 0 ? 0 : n - 1);
  const int64_t stop = clamp(bounds[1], given[1], step > 0 ? n : -1);
  std::vector<int64_t> indices;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) indices.push_back(i);
  if (obj.is_string()) {
    std::u32string out;
    for (int64_t i : indices) out.push_back(cps[static_cast<size_t>(i)]);
    return Value::Str(EncodeUtf8(out));
  }
  std::vector<Value> items;
  for (int64_t i : indices) items.push_back(obj.as_list().items[static_cast<size_t>(i)]);
  return Value::MakeList(std::move(items), obj.as_list().is_tuple);
}

absl::StatusOr<Value> Renderer::EvalLiteralContainer(const Expr& expr, const ScopePtr& scope) {
  if (expr.kind == Expr::Kind::kDict) {
    Dict dict;
    for (size_t i = 0; i + 1 < expr.children.size(); i += 2) {
      TM_ASSIGN_OR_RETURN(Value key, Eval(*expr.children[i], scope));
      TM_ASSIGN_OR_RETURN(Value value, Eval(*expr.children[i + 1], scope));
      if (key.is_list() || key.is_dict() || key.is_undefined()) {
        return absl::InvalidArgumentError(absl::StrCat("unhashable type: '", TypeName(key), "'"));
      }
      dict.Set(std::move(key), std::move(value));
    }
    return Value::MakeDict(std::move(dict));
  }
  std::vector<Value> items;
  items.reserve(expr.children.size());
  for (const ExprPtr& child : expr.children) {
    TM_ASSIGN_OR_RETURN(Value v, Eval(*child, scope));
    items.push_back(std::move(v));
  }
  return Value::MakeList(std::move(items), expr.kind == Expr::Kind::kTuple);
}

absl::StatusOr<CallArgs> Renderer::EvalArgs(const Expr& expr, size_t first, const ScopePtr& scope) {
  CallArgs args;
  for (size_t i = first; i < expr.children.size(); ++i) {
    TM_ASSIGN_OR_RETURN(Value v, Eval(*expr.children[i], scope));
    args.positional.push_back(std::move(v));
  }
  for (const auto& [name, value_expr] : expr.kwargs) {
    TM_ASSIGN_OR_RETURN(Value v, Eval(*value_expr, scope));
    args.keyword.emplace_back(name, std::move(v));
  }
  return args;
}

absl::StatusOr<Value> Renderer::EvalFilter(const Expr& expr, const ScopePtr& scope,
                                           const Value* input) {
  Value operand;
  const Expr* inner = expr.children[0].get();
  if (inner == nullptr) {
    if (input == nullptr) return absl::InternalError("filter without operand");
    operand = *input;
  } else if (inner->kind == Expr::Kind::kFilter) {
    TM_ASSIGN_OR_RETURN(operand, EvalFilter(*inner, scope, input));
  } else {
    TM_ASSIGN_OR_RETURN(operand, Eval(*inner, scope));
  }
  TM_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, scope));
  return ApplyFilter(expr.name, operand, args);
}

absl::StatusOr<Value> Renderer::Eval(const Expr& expr, const ScopePtr& scope) {
  switch (expr.kind) {
    case Expr::Kind::kLiteral:
      return expr.literal;
    case Expr::Kind::kName: {
      const Value* v = scope->Find(expr.name);
      if (v != nullptr) return *v;
      return Value::Undefined(absl::StrCat("'", expr.name, "' is undefined"));
    }
    case Expr::Kind::kList:
    case Expr::Kind::kTuple:
    case Expr::Kind::kDict:
      return EvalLiteralContainer(expr, scope);
    case Expr::Kind::kGetAttr: {
      TM_ASSIGN_OR_RETURN(Value obj, Eval(*expr.children[0], scope));
      if (obj.is_undefined()) return UndefinedError(obj);
      return GetAttr(obj, expr.name);
    }
    case Expr::Kind::kGetItem: {
      TM_ASSIGN_OR_RETURN(Value obj, Eval(*expr.children[0], scope));
      if (obj.is_undefined()) return UndefinedError(obj);
      TM_ASSIGN_OR_RETURN(Value key, Eval(*expr.children[1], scope));
      return GetItem(obj, key);
    }
    case Expr::Kind::kSlice:
      return EvalSlice(expr, scope);
    case Expr::Kind::kCall: {
      TM_ASSIGN_OR_RETURN(Value callee, Eval(*expr.children[0], scope));
      TM_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, scope));
      return Call(callee, args);
    }
    case Expr::Kind::kFilter:
      return EvalFilter(expr, scope, nullptr);
    case Expr::Kind::kTest: {
      TM_ASSIGN_OR_RETURN(Value operand, Eval(*expr.children[0], scope));
      TM_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(expr, 1, scope));
      TM_ASSIGN_OR_RETURN(bool result, ApplyTest(expr.name, operand, args));
      return Value::Bool(result != expr.negated);
    }
    case Expr::Kind::kUnary: {
      TM_ASSIGN_OR_RETURN(Value v, Eval(*expr.children[0], scope));
      if (expr.name == "not") return Value::Bool(!Truthy(v));
      if (v.is_undefined()) return UndefinedError(v);
      if (!v.is_number()) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad operand type for unary ", expr.name, ": '", TypeName(v), "'"));
      }
      if (expr.name == "+") return v.is_float() ? v : Value::Int(v.as_int());
      if (v.is_float()) return Value::Float(-v.as_float());
      if (v.as_int() == std::numeric_limits<int64_t>::min()) {
        return absl::OutOfRangeError("integer overflow");
      }
      return Value::Int(-v.as_int());
    }
    case Expr::Kind::kBinary: {
      TM_ASSIGN_OR_RETURN(Value a, Eval(*expr.children[0], scope));
      TM_ASSIGN_OR_RETURN(Value b, Eval(*expr.children[1], scope));
      return EvalBinary(expr.name, a, b);
    }
    case Expr::Kind::kAnd:
    case Expr::Kind::kOr: {
      // Python returns the deciding operand itself, not a bool.
      TM_ASSIGN_OR_RETURN(Value a, Eval(*expr.children[0], scope));
      if (Truthy(a) == (expr.kind == Expr::Kind::kOr)) return a;
      return Eval(*expr.children[1], scope);
    }
    case Expr::Kind::kCompare:
      return EvalCompare(expr, scope);
    case Expr::Kind::kCondExpr: {
      TM_ASSIGN_OR_RETURN(Value test, Eval(*expr.children[0], scope));
      if (Truthy(test)) return Eval(*expr.children[1], scope);
      if (!expr.children[2]) return Value::Undefined("the inline if-expression had no else");
      return Eval(*expr.children[2], scope);
    }
  }
  return absl::InternalError("unknown expression kind");
}

absl::StatusOr<Value> Renderer::Call(const Value& callee, CallArgs& args) {
  if (callee.is_undefined()) return UndefinedError(callee);
  if (!callee.is_callable()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", TypeName(callee), "' object is not callable"));
  }
  return callee.as_callable().fn(*this, args);
}

absl::StatusOr<Value> Renderer::ApplyFilter(const std::string& name, const Value& input,
                                            CallArgs& args) {
  const FilterFn* fn = FindFilter(name);
  if (fn == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("no filter named '", name, "'"));
  return (*fn)(*this, input, args);
}

absl::StatusOr<bool> Renderer::ApplyTest(const std::string& name, const Value& input,
                                         CallArgs& args) {
  const TestFn* fn = FindTest(name);
  if (fn == nullptr) return absl::InvalidArgumentError(absl::StrCat("no test named '", name, "'"));
  return (*fn)(*this, input, args);
}

}  // namespace tokenmill::jinja
