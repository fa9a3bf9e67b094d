#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "tokenizer/jinja/py_text.h"
#include "tokenmill/core/status.h"

namespace tokenmill::jinja {

const Value* Dict::Find(const Value& key) const {
  if (key.is_string()) return FindString(key.as_string());
  for (const auto& [k, v] : items_) {
    if (!k.is_string() && Equals(k, key)) return &v;
  }
  return nullptr;
}

const Value* Dict::FindString(const std::string& key) const {
  auto it = string_index_.find(key);
  return it == string_index_.end() ? nullptr : &items_[it->second].second;
}

void Dict::Set(Value key, Value value) {
  if (key.is_string()) {
    auto [it, inserted] = string_index_.try_emplace(key.as_string(), items_.size());
    if (!inserted) {
      items_[it->second].second = std::move(value);
      return;
    }
    items_.emplace_back(std::move(key), std::move(value));
    return;
  }
  for (auto& [k, v] : items_) {
    if (!k.is_string() && Equals(k, key)) {
      v = std::move(value);
      return;
    }
  }
  items_.emplace_back(std::move(key), std::move(value));
}

absl::Status Object::SetAttr(const std::string& name, Value) {
  return absl::InvalidArgumentError(
      absl::StrCat("cannot assign attribute '", name, "' on a ", TypeName(), " object"));
}

std::string Object::Repr() const { return absl::StrCat("<", TypeName(), " object>"); }

Value Value::Undefined(std::string message) {
  return Value(InitTag{}, UndefinedData{std::make_shared<const std::string>(std::move(message))});
}
Value Value::Str(std::string s) {
  return Value(InitTag{},
               std::shared_ptr<const std::string>(std::make_shared<std::string>(std::move(s))));
}
Value Value::MakeList(std::vector<Value> items, bool is_tuple) {
  auto list = std::make_shared<List>();
  list->items = std::move(items);
  list->is_tuple = is_tuple;
  for (const Value& item : list->items) list->depth = std::max(list->depth, Depth(item) + 1);
  return Value(InitTag{}, std::shared_ptr<const List>(std::move(list)));
}
Value Value::MakeDict(Dict dict) {
  for (const auto& [k, v] : dict.items()) dict.depth_ = std::max(dict.depth_, Depth(v) + 1);
  return Value(InitTag{}, std::shared_ptr<const Dict>(std::make_shared<Dict>(std::move(dict))));
}
Value Value::MakeCallable(std::string name, NativeFunction fn) {
  return Value(InitTag{}, std::shared_ptr<const Callable>(std::make_shared<Callable>(
                              Callable{std::move(name), std::move(fn)})));
}
Value Value::MakeObject(std::shared_ptr<Object> object) {
  return Value(InitTag{}, std::move(object));
}

bool Value::as_bool() const {
  TM_CHECK(is_bool());
  return std::get<bool>(data_);
}
int64_t Value::as_int() const {
  if (is_bool()) return std::get<bool>(data_) ? 1 : 0;
  TM_CHECK(is_int());
  return std::get<int64_t>(data_);
}
double Value::as_float() const {
  if (is_float()) return std::get<double>(data_);
  return static_cast<double>(as_int());
}
const std::string& Value::as_string() const {
  TM_CHECK(is_string());
  return *std::get<std::shared_ptr<const std::string>>(data_);
}
const List& Value::as_list() const {
  TM_CHECK(is_list());
  return *std::get<std::shared_ptr<const List>>(data_);
}
const Dict& Value::as_dict() const {
  TM_CHECK(is_dict());
  return *std::get<std::shared_ptr<const Dict>>(data_);
}
const Callable& Value::as_callable() const {
  TM_CHECK(is_callable());
  return *std::get<std::shared_ptr<const Callable>>(data_);
}
Object& Value::as_object() const {
  TM_CHECK(is_object());
  return *std::get<std::shared_ptr<Object>>(data_);
}
const std::string& Value::undefined_message() const {
  static const std::string kEmpty;
  TM_CHECK(is_undefined());
  const auto& message = std::get<UndefinedData>(data_).message;
  return message ? *message : kEmpty;
}

int Depth(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kList:
      return v.as_list().depth;
    case Value::Kind::kDict:
      return v.as_dict().depth();
    case Value::Kind::kObject:
      return v.as_object().depth();
    default:
      return 0;
  }
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.as_bool();
    case Value::Kind::kInt:
      return v.as_int() != 0;
    case Value::Kind::kFloat:
      return v.as_float() != 0.0;
    case Value::Kind::kString:
      return !v.as_string().empty();
    case Value::Kind::kList:
      return !v.as_list().items.empty();
    case Value::Kind::kDict:
      return v.as_dict().size() != 0;
    case Value::Kind::kCallable:
    case Value::Kind::kObject:
      return true;
  }
  return false;
}

bool Equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.as_string() == b.as_string();
    case Value::Kind::kList: {
      const auto& x = a.as_list();
      const auto& y = b.as_list();
      if (x.is_tuple != y.is_tuple || x.items.size() != y.items.size()) return false;
      for (size_t i = 0; i < x.items.size(); ++i) {
        if (!Equals(x.items[i], y.items[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      const auto& x = a.as_dict();
      const auto& y = b.as_dict();
      if (x.size() != y.size()) return false;
      for (const auto& [k, v] : x.items()) {
        const Value* other = y.Find(k);
        if (other == nullptr || !Equals(v, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kCallable:
      return &a.as_callable() == &b.as_callable();
    case Value::Kind::kObject:
      return &a.as_object() == &b.as_object();
    default:
      return false;
  }
}

absl::StatusOr<bool> LessThan(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() < b.as_float();
    return a.as_int() < b.as_int();
  }
  // UTF-8 byte order equals code point order.
  if (a.is_string() && b.is_string()) return a.as_string() < b.as_string();
  if (a.is_list() && b.is_list() && a.as_list().is_tuple == b.as_list().is_tuple) {
    const auto& x = a.as_list().items;
    const auto& y = b.as_list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (Equals(x[i], y[i])) continue;
      return LessThan(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  return absl::InvalidArgumentError(absl::StrCat("'<' not supported between instances of '",
                                                 TypeName(a), "' and '", TypeName(b), "'"));
}

std::string ToStr(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kString:
      return v.as_string();
    default:
      return Repr(v);
  }
}

std::string Repr(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return v.as_bool() ? "True" : "False";
    case Value::Kind::kInt:
      return std::to_string(v.as_int());
    case Value::Kind::kFloat:
      return PyFloatRepr(v.as_float());
    case Value::Kind::kString:
      return PyStringRepr(v.as_string());
    case Value::Kind::kList: {
      const auto& list = v.as_list();
      std::string out = list.is_tuple ? "(" : "[";
      for (size_t i = 0; i < list.items.size(); ++i) {
        if (i > 0) out += ", ";
        out += Repr(list.items[i]);
      }
      if (list.is_tuple && list.items.size() == 1) out += ",";
      out += list.is_tuple ? ")" : "]";
      return out;
    }
    case Value::Kind::kDict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, item] : v.as_dict().items()) {
        if (!first) out += ", ";
        first = false;
        out += Repr(k) + ": " + Repr(item);
      }
      return out + "}";
    }
    case Value::Kind::kCallable:
      return absl::StrCat("<function ", v.as_callable().name, ">");
    case Value::Kind::kObject:
      return v.as_object().Repr();
  }
  return "";
}

std::string TypeName(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kNone:
      return "NoneType";
    case Value::Kind::kBool:
      return "bool";
    case Value::Kind::kInt:
      return "int";
    case Value::Kind::kFloat:
      return "float";
    case Value::Kind::kString:
      return "str";
    case Value::Kind::kList:
      return v.as_list().is_tuple ? "tuple" : "list";
    case Value::Kind::kDict:
      return "dict";
    case Value::Kind::kCallable:
      return "function";
    case Value::Kind::kObject:
      return v.as_object().TypeName();
  }
  return "object";
}

absl::Status UndefinedError(const Value& undefined) {
  const std::string& message = undefined.undefined_message();
  return absl::InvalidArgumentError(message.empty() ? "value is undefined" : message);
}

}  // namespace tokenmill::jinja
