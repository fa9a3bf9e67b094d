// Statement execution: output, if, for (with loop object, filter, else, break/continue),
// set (names, tuples, namespace attributes, blocks), macros and call blocks, filter blocks.
#include "tokenizer/jinja/renderer.h"

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenmill/core/status.h"

namespace tokenmill::jinja {
namespace {

constexpr char kLocatedPayload[] = "tokenmill.jinja/located";

// Prefixes the first (innermost) statement line an error passes through.
absl::Status Locate(absl::Status status, int line) {
  if (status.ok() || status.GetPayload(kRaisedPayload) || status.GetPayload(kLocatedPayload)) {
    return status;
  }
  absl::Status located(status.code(), absl::StrCat("line ", line, ": ", status.message()));
  located.SetPayload(kLocatedPayload, absl::Cord("1"));
  return located;
}

// jinja2's LoopContext for one iteration.
class LoopObject : public Object {
 public:
  LoopObject(std::shared_ptr<const std::vector<Value>> items, size_t index)
      : items_(std::move(items)), index_(index) {}
  std::string TypeName() const override { return "LoopContext"; }
  std::string Repr() const override {
    return absl::StrCat("<LoopContext ", index_ + 1, "/", items_->size(), ">");
  }
  Value GetAttr(const std::string& name) const override {
    const auto n = static_cast<int64_t>(items_->size());
    const auto i = static_cast<int64_t>(index_);
    if (name == "index") return Value::Int(i + 1);
    if (name == "index0") return Value::Int(i);
    if (name == "revindex") return Value::Int(n - i);
    if (name == "revindex0") return Value::Int(n - i - 1);
    if (name == "first") return Value::Bool(i == 0);
    if (name == "last") return Value::Bool(i == n - 1);
    if (name == "length") return Value::Int(n);
    if (name == "depth") return Value::Int(1);
    if (name == "depth0") return Value::Int(0);
    if (name == "previtem") {
      return i > 0 ? (*items_)[index_ - 1] : Value::Undefined("there is no previous item");
    }
    if (name == "nextitem") {
      return i + 1 < n ? (*items_)[index_ + 1] : Value::Undefined("there is no next item");
    }
    if (name == "cycle") {
      const size_t index = index_;
      return Value::MakeCallable(
          "loop.cycle", [index](Renderer&, CallArgs& args) -> absl::StatusOr<Value> {
            if (args.positional.empty()) {
              return absl::InvalidArgumentError("no items for cycling given");
            }
            return args.positional[index % args.positional.size()];
          });
    }
    return Value::Undefined(absl::StrCat("'LoopContext object' has no attribute '", name, "'"));
  }

 private:
  std::shared_ptr<const std::vector<Value>> items_;
  size_t index_;
};

}  // namespace

const Value* Scope::Find(const std::string& name) const {
  for (const Scope* s = this; s != nullptr; s = s->parent_.get()) {
    auto it = s->vars_.find(name);
    if (it != s->vars_.end()) return &it->second;
  }
  return nullptr;
}

absl::StatusOr<std::string> Renderer::Render(const Template& tmpl, const ScopePtr& globals) {
  // The template's own top-level frame, so `set` never rewrites the caller's globals.
  auto scope = std::make_shared<Scope>(globals);
  std::string out;
  TM_ASSIGN_OR_RETURN(Flow flow, Exec(tmpl.body, scope, &out));
  (void)flow;  // break/continue outside a loop are parse-time legal no-ops, as in jinja2
  return out;
}

absl::Status Renderer::CheckSize(size_t size) const {
  if (size <= limits_.max_output_bytes) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "template output or value larger than the limit of ", limits_.max_output_bytes, " bytes"));
}

absl::Status Renderer::CountIterations(int64_t n) {
  num_iterations_ += n;
  if (num_iterations_ <= limits_.max_loop_iterations) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("template ran more than ", limits_.max_loop_iterations, " loop iterations"));
}

absl::Status Renderer::Append(const std::string& text, std::string* out) const {
  TM_RETURN_IF_ERROR(CheckSize(out->size() + text.size()));
  out->append(text);
  return absl::OkStatus();
}

absl::StatusOr<Renderer::Flow> Renderer::Exec(const StmtList& body, const ScopePtr& scope,
                                              std::string* out) {
  for (const StmtPtr& stmt : body) {
    absl::StatusOr<Flow> flow = ExecStmt(*stmt, scope, out);
    if (!flow.ok()) return Locate(flow.status(), stmt->line);
    if (*flow != Flow::kNormal) return *flow;
  }
  return Flow::kNormal;
}

absl::StatusOr<Renderer::Flow> Renderer::ExecStmt(const Stmt& stmt, const ScopePtr& scope,
                                                  std::string* out) {
  switch (stmt.kind) {
    case Stmt::Kind::kText:
      TM_RETURN_IF_ERROR(Append(stmt.text, out));
      return Flow::kNormal;
    case Stmt::Kind::kOutput: {
      TM_ASSIGN_OR_RETURN(Value v, Eval(*stmt.expr, scope));
      TM_RETURN_IF_ERROR(Append(ToStr(v), out));
      return Flow::kNormal;
    }
    case Stmt::Kind::kIf:
      for (const auto& [condition, body] : stmt.branches) {
        if (condition) {
          TM_ASSIGN_OR_RETURN(Value test, Eval(*condition, scope));
          if (!Truthy(test)) continue;
        }
        return Exec(body, scope, out);
      }
      return Flow::kNormal;
    case Stmt::Kind::kFor:
      return ExecFor(stmt, scope, out);
    case Stmt::Kind::kSet:
    case Stmt::Kind::kSetBlock:
      TM_RETURN_IF_ERROR(ExecSet(stmt, scope));
      return Flow::kNormal;
    case Stmt::Kind::kMacro:
      scope->Set(stmt.text, MakeMacro(stmt, scope));
      return Flow::kNormal;
    case Stmt::Kind::kCallBlock:
      TM_RETURN_IF_ERROR(ExecCallBlock(stmt, scope, out));
      return Flow::kNormal;
    case Stmt::Kind::kFilterBlock: {
      TM_ASSIGN_OR_RETURN(std::string text,
                          RenderToString(stmt.body, std::make_shared<Scope>(scope)));
      const Value input = Value::Str(std::move(text));
      TM_ASSIGN_OR_RETURN(Value filtered, EvalFilter(*stmt.filter, scope, &input));
      TM_RETURN_IF_ERROR(Append(ToStr(filtered), out));
      return Flow::kNormal;
    }
    case Stmt::Kind::kWith: {
      auto inner = std::make_shared<Scope>(scope);
      for (const auto& [name, expr] : stmt.assignments) {
        TM_ASSIGN_OR_RETURN(Value v, Eval(*expr, scope));
        inner->Set(name, std::move(v));
      }
      return Exec(stmt.body, inner, out);
    }
    case Stmt::Kind::kScope:
      return Exec(stmt.body, std::make_shared<Scope>(scope), out);
    case Stmt::Kind::kBreak:
      return Flow::kBreak;
    case Stmt::Kind::kContinue:
      return Flow::kContinue;
  }
  return Flow::kNormal;
}

absl::StatusOr<Renderer::Flow> Renderer::ExecFor(const Stmt& stmt, const ScopePtr& scope,
                                                 std::string* out) {
  TM_ASSIGN_OR_RETURN(Value iterable, Eval(*stmt.expr, scope));
  TM_ASSIGN_OR_RETURN(std::vector<Value> all, Iterate(iterable));
  auto items = std::make_shared<std::vector<Value>>();
  if (stmt.filter) {
    // The loop condition sees the loop variables but not `loop` (jinja2 filters first, so
    // loop.length and loop.last count only the kept items).
    for (Value& item : all) {
      TM_RETURN_IF_ERROR(CountIterations(1));
      auto probe = std::make_shared<Scope>(scope);
      TM_RETURN_IF_ERROR(Assign(stmt.target, item, *probe));
      TM_ASSIGN_OR_RETURN(Value keep, Eval(*stmt.filter, probe));
      if (Truthy(keep)) items->push_back(std::move(item));
    }
  } else {
    *items = std::move(all);
  }
  if (items->empty()) {
    TM_ASSIGN_OR_RETURN(Flow flow, Exec(stmt.else_body, std::make_shared<Scope>(scope), out));
    (void)flow;
    return Flow::kNormal;
  }
  std::shared_ptr<const std::vector<Value>> shared_items = items;
  for (size_t i = 0; i < shared_items->size(); ++i) {
    TM_RETURN_IF_ERROR(CountIterations(1));
    // A fresh frame per iteration: jinja2 does not carry `set` across iterations.
    auto frame = std::make_shared<Scope>(scope);
    TM_RETURN_IF_ERROR(Assign(stmt.target, (*shared_items)[i], *frame));
    frame->Set("loop", Value::MakeObject(std::make_shared<LoopObject>(shared_items, i)));
    TM_ASSIGN_OR_RETURN(Flow flow, Exec(stmt.body, frame, out));
    if (flow == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

absl::Status Renderer::Assign(const Target& target, Value value, Scope& scope) {
  if (Depth(value) > kMaxValueDepth) {
    return absl::ResourceExhaustedError(
        absl::StrCat("value nested deeper than ", kMaxValueDepth, " levels"));
  }
  if (!target.is_tuple) {
    scope.Set(target.names[0], std::move(value));
    return absl::OkStatus();
  }
  TM_ASSIGN_OR_RETURN(std::vector<Value> parts, Iterate(value));
  if (parts.size() != target.names.size()) {
    return absl::InvalidArgumentError(
        parts.size() > target.names.size()
            ? absl::StrCat("too many values to unpack (expected ", target.names.size(), ")")
            : absl::StrCat("not enough values to unpack (expected ", target.names.size(), ", got ",
                           parts.size(), ")"));
  }
  for (size_t i = 0; i < parts.size(); ++i) scope.Set(target.names[i], std::move(parts[i]));
  return absl::OkStatus();
}

absl::Status Renderer::ExecSet(const Stmt& stmt, const ScopePtr& scope) {
  Value value;
  if (stmt.kind == Stmt::Kind::kSet) {
    TM_ASSIGN_OR_RETURN(value, Eval(*stmt.expr, scope));
  } else {
    TM_ASSIGN_OR_RETURN(std::string text,
                        RenderToString(stmt.body, std::make_shared<Scope>(scope)));
    value = Value::Str(std::move(text));
    if (stmt.filter) {
      TM_ASSIGN_OR_RETURN(value, EvalFilter(*stmt.filter, scope, &value));
    }
  }
  if (stmt.target.attribute.empty()) return Assign(stmt.target, std::move(value), *scope);
  const Value* ns = scope->Find(stmt.target.names[0]);
  if (ns == nullptr || !ns->is_object()) {
    return absl::InvalidArgumentError("cannot assign attribute on non-namespace object");
  }
  if (Depth(value) >= kMaxValueDepth) {
    return absl::ResourceExhaustedError(
        absl::StrCat("value nested deeper than ", kMaxValueDepth, " levels"));
  }
  return ns->as_object().SetAttr(stmt.target.attribute, std::move(value));
}

absl::StatusOr<std::string> Renderer::RenderToString(const StmtList& body, const ScopePtr& scope) {
  std::string text;
  TM_ASSIGN_OR_RETURN(Flow flow, Exec(body, scope, &text));
  (void)flow;
  return text;
}

Value Renderer::MakeMacro(const Stmt& stmt, const ScopePtr& scope) {
  const Stmt* macro = &stmt;  // the tree outlives every render that can call it
  // Capturing the defining frame gives macros the variables visible where they were
  // defined, including themselves (recursion).
  std::weak_ptr<Scope> weak_scope = scope;
  return Value::MakeCallable(
      stmt.text, [macro, weak_scope](Renderer& renderer, CallArgs& args) -> absl::StatusOr<Value> {
        ScopePtr defining = weak_scope.lock();
        if (!defining) return absl::InternalError("macro called after its frame ended");
        return renderer.CallMacro(*macro, defining, args);
      });
}

absl::StatusOr<Value> Renderer::CallMacro(const Stmt& stmt, const ScopePtr& defining_scope,
                                          CallArgs& args) {
  if (call_depth_ >= limits_.max_call_depth) {
    return absl::ResourceExhaustedError(
        absl::StrCat("macro calls nested deeper than ", limits_.max_call_depth));
  }
  ++call_depth_;
  absl::Cleanup leave = [this] { --call_depth_; };
  auto frame = std::make_shared<Scope>(defining_scope);
  const size_t num_params = stmt.params.size();
  if (args.positional.size() > num_params && !stmt.uses_varargs) {
    return absl::InvalidArgumentError(
        absl::StrCat("macro '", stmt.text, "' takes not more than ", num_params, " argument(s)"));
  }
  std::vector<bool> bound(num_params, false);
  for (size_t i = 0; i < num_params && i < args.positional.size(); ++i) {
    frame->Set(stmt.params[i].name, args.positional[i]);
    bound[i] = true;
  }
  Dict extra_kwargs;
  for (auto& [name, value] : args.keyword) {
    size_t i = 0;
    while (i < num_params && stmt.params[i].name != name) ++i;
    if (i < num_params) {
      if (bound[i]) {
        return absl::InvalidArgumentError(
            absl::StrCat("macro '", stmt.text, "' got multiple values for argument '", name, "'"));
      }
      frame->Set(name, value);
      bound[i] = true;
    } else if (name == "caller" && stmt.uses_caller) {
      frame->Set(name, value);
    } else if (stmt.uses_kwargs) {
      extra_kwargs.Set(Value::Str(name), value);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("macro '", stmt.text, "' takes no keyword argument '", name, "'"));
    }
  }
  for (size_t i = 0; i < num_params; ++i) {
    if (bound[i]) continue;
    // Defaults are evaluated per call in the macro frame (they may use earlier params);
    // a parameter without one is simply undefined, as in jinja2.
    Value v = Value::Undefined(absl::StrCat("'", stmt.params[i].name, "' is undefined"));
    if (stmt.params[i].default_value) {
      TM_ASSIGN_OR_RETURN(v, Eval(*stmt.params[i].default_value, frame));
    }
    frame->Set(stmt.params[i].name, std::move(v));
  }
  if (stmt.uses_varargs) {
    std::vector<Value> rest;
    for (size_t i = num_params; i < args.positional.size(); ++i) rest.push_back(args.positional[i]);
    frame->Set("varargs", Value::MakeList(std::move(rest), /*is_tuple=*/true));
  }
  if (stmt.uses_kwargs) frame->Set("kwargs", Value::MakeDict(std::move(extra_kwargs)));
  TM_ASSIGN_OR_RETURN(std::string text, RenderToString(stmt.body, frame));
  return Value::Str(std::move(text));
}

absl::Status Renderer::ExecCallBlock(const Stmt& stmt, const ScopePtr& scope, std::string* out) {
  const Expr& call = *stmt.expr;
  TM_ASSIGN_OR_RETURN(Value callee, Eval(*call.children[0], scope));
  TM_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(call, 1, scope));
  // caller() renders the block body like a macro defined at the call site.
  const Stmt* body_stmt = &stmt;
  std::weak_ptr<Scope> weak_scope = scope;
  args.keyword.emplace_back(
      "caller",
      Value::MakeCallable("caller",
                          [body_stmt, weak_scope](Renderer& renderer,
                                                  CallArgs& caller_args) -> absl::StatusOr<Value> {
                            ScopePtr defining = weak_scope.lock();
                            if (!defining)
                              return absl::InternalError("caller() used after its frame ended");
                            return renderer.CallMacro(*body_stmt, defining, caller_args);
                          }));
  TM_ASSIGN_OR_RETURN(Value result, Call(callee, args));
  return Append(ToStr(result), out);
}

}  // namespace tokenmill::jinja
