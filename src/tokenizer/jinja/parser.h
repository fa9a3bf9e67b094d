// Recursive-descent parser for the Jinja subset, following jinja2/parser.py's grammar and
// operator precedence. Statements live in parser.cc, expressions in parser_expr.cc.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/lexer.h"

namespace tokenmill::jinja {

// Tokenizes and parses; InvalidArgument "template syntax error at line L, column C: ..."
// for malformed templates and for tags outside the subset (include, extends, import...).
absl::StatusOr<std::unique_ptr<Template>> ParseTemplate(const std::string& source);

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}
  absl::StatusOr<std::unique_ptr<Template>> Parse();

 private:
  // Deep nesting is refused rather than allowed to exhaust the stack.
  static constexpr int kMaxDepth = 200;

  // --- statements (parser.cc) ---
  // Parses until `{% <one of end_tags>` and leaves the stream after that tag name, with the
  // name in *found. With no end tags, parses to the end of the template.
  absl::Status ParseBody(const std::vector<std::string>& end_tags, StmtList* out,
                         std::string* found);
  absl::StatusOr<StmtPtr> ParseStatement();
  absl::Status ParseIf(Stmt* stmt);
  absl::Status ParseFor(Stmt* stmt);
  absl::Status ParseSet(Stmt* stmt);
  absl::Status ParseMacro(Stmt* stmt);
  absl::Status ParseCallBlock(Stmt* stmt);
  absl::Status ParseFilterBlock(Stmt* stmt);
  absl::Status ParseWith(Stmt* stmt);
  absl::Status ParseScope(Stmt* stmt, const std::string& tag);
  absl::StatusOr<Target> ParseAssignTarget(bool with_namespace);
  absl::Status ExpectBlockEnd();

  // --- expressions (parser_expr.cc) ---
  absl::StatusOr<ExprPtr> ParseTuple(bool with_condexpr, bool explicit_parentheses,
                                     const std::vector<std::string>& extra_end_names = {});
  absl::StatusOr<ExprPtr> ParseExpression(bool with_condexpr = true);
  absl::StatusOr<ExprPtr> ParseCondExpr();
  absl::StatusOr<ExprPtr> ParseOr();
  absl::StatusOr<ExprPtr> ParseAnd();
  absl::StatusOr<ExprPtr> ParseNot();
  absl::StatusOr<ExprPtr> ParseCompare();
  absl::StatusOr<ExprPtr> ParseMath1();
  absl::StatusOr<ExprPtr> ParseConcat();
  absl::StatusOr<ExprPtr> ParseMath2();
  absl::StatusOr<ExprPtr> ParsePow();
  absl::StatusOr<ExprPtr> ParseUnary(bool with_filter);
  absl::StatusOr<ExprPtr> ParsePrimary();
  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscript(ExprPtr node);
  absl::StatusOr<ExprPtr> ParseSubscribed();
  absl::StatusOr<ExprPtr> ParseListOrDict(bool is_dict);
  absl::Status ParseCallArgs(Expr* call);  // at '(' ; fills children (after [0]) / kwargs
  absl::StatusOr<ExprPtr> ParseFilter(ExprPtr node, bool start_inline);
  absl::StatusOr<ExprPtr> ParseTest(ExprPtr node);
  absl::StatusOr<std::string> ParseDottedName();

  // --- token helpers (parser.cc) ---
  const Token& Current() const { return tokens_[pos_]; }
  const Token& Look() const { return tokens_[pos_ + 1 < tokens_.size() ? pos_ + 1 : pos_]; }
  void Advance() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool IsOp(const char* op) const;
  bool IsName(const char* name) const;
  bool SkipOp(const char* op);
  bool SkipName(const char* name);
  absl::Status ExpectOp(const char* op);
  absl::StatusOr<std::string> ExpectName();
  absl::Status Error(const std::string& message) const;
  absl::Status EnterNesting();
  static std::string Describe(const Token& token);
  ExprPtr MakeExpr(Expr::Kind kind) const;

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int depth_ = 0;
  // Names read inside the macro being parsed (to learn if it takes varargs/kwargs/caller).
  std::vector<absl::flat_hash_set<std::string>> macro_names_;
};

}  // namespace tokenmill::jinja
