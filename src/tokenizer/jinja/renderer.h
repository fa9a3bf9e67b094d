// Tree-walking evaluator. One Renderer renders one template once: it holds the per-render
// budgets (output bytes, loop iterations, call depth), so hostile templates end with a
// ResourceExhausted Status instead of hanging or crashing. Not thread-safe; make one per
// render (cheap). Statements are in renderer.cc, expressions in eval_expr.cc.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace tokenmill::jinja {

struct RenderLimits {
  size_t max_output_bytes = size_t{64} << 20;  // also caps every string built on the way
  int64_t max_loop_iterations = 10'000'000;    // summed over all loops of one render
  int max_call_depth = 100;                    // nested macro calls
};

// A variable frame. Lookups walk to the parent; assignments stay local, which gives
// Jinja's rules: for-loop bodies and macros get a frame, if-blocks do not.
class Scope {
 public:
  explicit Scope(std::shared_ptr<Scope> parent = nullptr) : parent_(std::move(parent)) {}
  const Value* Find(const std::string& name) const;
  void Set(const std::string& name, Value value) { vars_[name] = std::move(value); }

 private:
  std::shared_ptr<Scope> parent_;
  absl::flat_hash_map<std::string, Value> vars_;
};
using ScopePtr = std::shared_ptr<Scope>;

// Status payload key marking an error raised by the template itself (raise_exception):
// its message is passed through verbatim, without a line prefix.
inline constexpr char kRaisedPayload[] = "tokenmill.jinja/raised";

class Renderer {
 public:
  explicit Renderer(const RenderLimits& limits) : limits_(limits) {}

  // Renders with `globals` as the outermost frame. Errors carry "line N: " prefixes.
  absl::StatusOr<std::string> Render(const Template& tmpl, const ScopePtr& globals);

  // For builtins (filters, tests, methods, macros).
  absl::StatusOr<Value> Call(const Value& callee, CallArgs& args);
  absl::StatusOr<Value> ApplyFilter(const std::string& name, const Value& input, CallArgs& args);
  absl::StatusOr<bool> ApplyTest(const std::string& name, const Value& input, CallArgs& args);
  // ResourceExhausted when a string or list of `size` bytes/items would pass the budget.
  absl::Status CheckSize(size_t size) const;
  absl::Status CountIterations(int64_t n);
  const RenderLimits& limits() const { return limits_; }

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  absl::StatusOr<Flow> Exec(const StmtList& body, const ScopePtr& scope, std::string* out);
  absl::StatusOr<Flow> ExecStmt(const Stmt& stmt, const ScopePtr& scope, std::string* out);
  absl::StatusOr<Flow> ExecFor(const Stmt& stmt, const ScopePtr& scope, std::string* out);
  absl::Status ExecSet(const Stmt& stmt, const ScopePtr& scope);
  absl::Status Assign(const Target& target, Value value, Scope& scope);
  absl::Status ExecCallBlock(const Stmt& stmt, const ScopePtr& scope, std::string* out);
  absl::StatusOr<std::string> RenderToString(const StmtList& body, const ScopePtr& scope);
  Value MakeMacro(const Stmt& stmt, const ScopePtr& scope);
  absl::StatusOr<Value> CallMacro(const Stmt& stmt, const ScopePtr& defining_scope, CallArgs& args);
  absl::Status Append(const std::string& text, std::string* out) const;

  // --- expressions (eval_expr.cc) ---
  absl::StatusOr<Value> Eval(const Expr& expr, const ScopePtr& scope);
  absl::StatusOr<CallArgs> EvalArgs(const Expr& expr, size_t first, const ScopePtr& scope);
  absl::StatusOr<Value> EvalBinary(const std::string& op, const Value& a, const Value& b);
  absl::StatusOr<Value> EvalCompare(const Expr& expr, const ScopePtr& scope);
  absl::StatusOr<Value> EvalSlice(const Expr& expr, const ScopePtr& scope);
  absl::StatusOr<Value> EvalLiteralContainer(const Expr& expr, const ScopePtr& scope);
  // `input` replaces the innermost null operand of a {% filter %} / {% set | f %} chain.
  absl::StatusOr<Value> EvalFilter(const Expr& expr, const ScopePtr& scope, const Value* input);

  RenderLimits limits_;
  int64_t num_iterations_ = 0;
  int call_depth_ = 0;
};

}  // namespace tokenmill::jinja
