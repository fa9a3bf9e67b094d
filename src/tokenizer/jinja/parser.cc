// Statement parsing: {% if %}, {% for %}, {% set %}, {% macro %}, ... and token helpers.
#include "tokenizer/jinja/parser.h"

#include <algorithm>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "tokenmill/core/status.h"

namespace tokenmill::jinja {

absl::StatusOr<std::unique_ptr<Template>> ParseTemplate(const std::string& source) {
  TM_ASSIGN_OR_RETURN(std::vector<Token> tokens, Tokenize(source));
  Parser parser(std::move(tokens));
  return parser.Parse();
}

absl::StatusOr<std::unique_ptr<Template>> Parser::Parse() {
  auto tmpl = std::make_unique<Template>();
  std::string found;
  TM_RETURN_IF_ERROR(ParseBody({}, &tmpl->body, &found));
  return tmpl;
}

bool Parser::IsOp(const char* op) const {
  return Current().type == TokenType::kOperator && Current().text == op;
}
bool Parser::IsName(const char* name) const {
  return Current().type == TokenType::kName && Current().text == name;
}
bool Parser::SkipOp(const char* op) {
  if (!IsOp(op)) return false;
  Advance();
  return true;
}
bool Parser::SkipName(const char* name) {
  if (!IsName(name)) return false;
  Advance();
  return true;
}

absl::Status Parser::ExpectOp(const char* op) {
  if (SkipOp(op)) return absl::OkStatus();
  return Error(absl::StrCat("expected '", op, "', got ", Describe(Current())));
}

absl::StatusOr<std::string> Parser::ExpectName() {
  if (Current().type != TokenType::kName) {
    return Error(absl::StrCat("expected a name, got ", Describe(Current())));
  }
  std::string name = Current().text;
  Advance();
  return name;
}

absl::Status Parser::Error(const std::string& message) const {
  return absl::InvalidArgumentError(absl::StrCat("template syntax error at line ", Current().line,
                                                 ", column ", Current().column, ": ", message));
}

absl::Status Parser::EnterNesting() {
  if (++depth_ > kMaxDepth) {
    --depth_;
    return Error("template nested too deeply");
  }
  return absl::OkStatus();
}

std::string Parser::Describe(const Token& token) {
  switch (token.type) {
    case TokenType::kText:
      return "template data";
    case TokenType::kVarBegin:
      return "'{{'";
    case TokenType::kVarEnd:
      return "end of print statement";
    case TokenType::kBlockBegin:
      return "'{%'";
    case TokenType::kBlockEnd:
      return "end of statement block";
    case TokenType::kName:
      return absl::StrCat("'", token.text, "'");
    case TokenType::kString:
      return "string";
    case TokenType::kInteger:
      return "integer";
    case TokenType::kFloat:
      return "float";
    case TokenType::kOperator:
      return absl::StrCat("'", token.text, "'");
    case TokenType::kEof:
      return "end of template";
  }
  return "token";
}

ExprPtr Parser::MakeExpr(Expr::Kind kind) const {
  auto expr = std::make_unique<Expr>();
  expr->kind = kind;
  expr->line = Current().line;
  return expr;
}

absl::Status Parser::ExpectBlockEnd() {
  if (Current().type == TokenType::kBlockEnd) {
    Advance();
    return absl::OkStatus();
  }
  return Error(absl::StrCat("expected end of statement block, got ", Describe(Current())));
}

absl::Status Parser::ParseBody(const std::vector<std::string>& end_tags, StmtList* out,
                               std::string* found) {
  TM_RETURN_IF_ERROR(EnterNesting());
  absl::Cleanup leave = [this] { --depth_; };
  while (true) {
    const Token& token = Current();
    switch (token.type) {
      case TokenType::kText: {
        auto stmt = std::make_unique<Stmt>();
        stmt->kind = Stmt::Kind::kText;
        stmt->line = token.line;
        stmt->text = token.text;
        out->push_back(std::move(stmt));
        Advance();
        break;
      }
      case TokenType::kVarBegin: {
        auto stmt = std::make_unique<Stmt>();
        stmt->kind = Stmt::Kind::kOutput;
        stmt->line = token.line;
        Advance();
        TM_ASSIGN_OR_RETURN(stmt->expr, ParseTuple(true, false));
        if (Current().type != TokenType::kVarEnd) {
          return Error(absl::StrCat("expected end of print statement, got ", Describe(Current())));
        }
        Advance();
        out->push_back(std::move(stmt));
        break;
      }
      case TokenType::kBlockBegin: {
        Advance();
        if (Current().type == TokenType::kName &&
            std::find(end_tags.begin(), end_tags.end(), Current().text) != end_tags.end()) {
          *found = Current().text;
          Advance();
          return absl::OkStatus();
        }
        TM_ASSIGN_OR_RETURN(StmtPtr stmt, ParseStatement());
        out->push_back(std::move(stmt));
        break;
      }
      case TokenType::kEof:
        if (end_tags.empty()) return absl::OkStatus();
        return Error(absl::StrCat("unexpected end of template, expected '", end_tags.back(), "'"));
      default:
        return Error(absl::StrCat("unexpected ", Describe(token)));
    }
  }
}

absl::StatusOr<StmtPtr> Parser::ParseStatement() {
  if (Current().type != TokenType::kName) {
    return Error(absl::StrCat("expected a tag name, got ", Describe(Current())));
  }
  auto stmt = std::make_unique<Stmt>();
  stmt->line = Current().line;
  const std::string tag = Current().text;
  Advance();
  if (tag == "if") {
    TM_RETURN_IF_ERROR(ParseIf(stmt.get()));
  } else if (tag == "for") {
    TM_RETURN_IF_ERROR(ParseFor(stmt.get()));
  } else if (tag == "set") {
    TM_RETURN_IF_ERROR(ParseSet(stmt.get()));
  } else if (tag == "macro") {
    TM_RETURN_IF_ERROR(ParseMacro(stmt.get()));
  } else if (tag == "call") {
    TM_RETURN_IF_ERROR(ParseCallBlock(stmt.get()));
  } else if (tag == "filter") {
    TM_RETURN_IF_ERROR(ParseFilterBlock(stmt.get()));
  } else if (tag == "with") {
    TM_RETURN_IF_ERROR(ParseWith(stmt.get()));
  } else if (tag == "block" || tag == "generation") {
    TM_RETURN_IF_ERROR(ParseScope(stmt.get(), tag));
  } else if (tag == "break" || tag == "continue") {
    stmt->kind = tag == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
    TM_RETURN_IF_ERROR(ExpectBlockEnd());
  } else {
    pos_ -= 1;  // point the error at the tag name
    return Error(absl::StrCat("unsupported or unknown tag '", tag, "'"));
  }
  return stmt;
}

absl::Status Parser::ParseIf(Stmt* stmt) {
  stmt->kind = Stmt::Kind::kIf;
  std::string found = "if";
  while (true) {
    ExprPtr condition;
    if (found != "else") {
      TM_ASSIGN_OR_RETURN(condition, ParseTuple(false, false));
    }
    TM_RETURN_IF_ERROR(ExpectBlockEnd());
    StmtList body;
    const std::vector<std::string> ends = found == "else"
                                              ? std::vector<std::string>{"endif"}
                                              : std::vector<std::string>{"elif", "else", "endif"};
    TM_RETURN_IF_ERROR(ParseBody(ends, &body, &found));
    stmt->branches.emplace_back(std::move(condition), std::move(body));
    if (found == "endif") return ExpectBlockEnd();
  }
}

absl::StatusOr<Target> Parser::ParseAssignTarget(bool with_namespace) {
  Target target;
  if (with_namespace && Current().type == TokenType::kName && Look().type == TokenType::kOperator &&
      Look().text == ".") {
    TM_ASSIGN_OR_RETURN(std::string ns, ExpectName());
    Advance();  // '.'
    TM_ASSIGN_OR_RETURN(target.attribute, ExpectName());
    target.names.push_back(std::move(ns));
    return target;
  }
  const bool parenthesized = SkipOp("(");
  while (true) {
    TM_ASSIGN_OR_RETURN(std::string name, ExpectName());
    if (name == "true" || name == "false" || name == "none" || name == "True" || name == "False" ||
        name == "None") {
      return Error(absl::StrCat("can't assign to '", name, "'"));
    }
    target.names.push_back(std::move(name));
    if (!SkipOp(",")) break;
    target.is_tuple = true;
    if (Current().type != TokenType::kName) break;  // trailing comma
  }
  if (parenthesized) TM_RETURN_IF_ERROR(ExpectOp(")"));
  return target;
}

absl::Status Parser::ParseFor(Stmt* stmt) {
  stmt->kind = Stmt::Kind::kFor;
  TM_ASSIGN_OR_RETURN(stmt->target, ParseAssignTarget(false));
  if (!SkipName("in")) return Error("expected 'in' in for loop");
  TM_ASSIGN_OR_RETURN(stmt->expr, ParseTuple(false, false, {"recursive"}));
  if (SkipName("if")) {
    TM_ASSIGN_OR_RETURN(stmt->filter, ParseExpression());
  }
  if (IsName("recursive")) return Error("recursive for loops are not supported");
  TM_RETURN_IF_ERROR(ExpectBlockEnd());
  std::string found;
  TM_RETURN_IF_ERROR(ParseBody({"endfor", "else"}, &stmt->body, &found));
  if (found == "else") {
    TM_RETURN_IF_ERROR(ExpectBlockEnd());
    TM_RETURN_IF_ERROR(ParseBody({"endfor"}, &stmt->else_body, &found));
  }
  return ExpectBlockEnd();
}

absl::Status Parser::ParseSet(Stmt* stmt) {
  TM_ASSIGN_OR_RETURN(stmt->target, ParseAssignTarget(true));
  if (SkipOp("=")) {
    stmt->kind = Stmt::Kind::kSet;
    TM_ASSIGN_OR_RETURN(stmt->expr, ParseTuple(true, false));
    return ExpectBlockEnd();
  }
  stmt->kind = Stmt::Kind::kSetBlock;
  if (IsOp("|")) {
    TM_ASSIGN_OR_RETURN(stmt->filter, ParseFilter(nullptr, false));
  }
  TM_RETURN_IF_ERROR(ExpectBlockEnd());
  std::string found;
  TM_RETURN_IF_ERROR(ParseBody({"endset"}, &stmt->body, &found));
  return ExpectBlockEnd();
}

absl::Status Parser::ParseMacro(Stmt* stmt) {
  stmt->kind = Stmt::Kind::kMacro;
  TM_ASSIGN_OR_RETURN(stmt->text, ExpectName());
  TM_RETURN_IF_ERROR(ExpectOp("("));
  while (!SkipOp(")")) {
    if (!stmt->params.empty()) TM_RETURN_IF_ERROR(ExpectOp(","));
    if (SkipOp(")")) break;  // trailing comma
    MacroParam param;
    TM_ASSIGN_OR_RETURN(param.name, ExpectName());
    if (SkipOp("=")) {
      TM_ASSIGN_OR_RETURN(param.default_value, ParseExpression());
    }
    stmt->params.push_back(std::move(param));
  }
  TM_RETURN_IF_ERROR(ExpectBlockEnd());
  macro_names_.emplace_back();
  std::string found;
  absl::Status status = ParseBody({"endmacro"}, &stmt->body, &found);
  const absl::flat_hash_set<std::string> names = std::move(macro_names_.back());
  macro_names_.pop_back();
  TM_RETURN_IF_ERROR(status);
  stmt->uses_varargs = names.contains("varargs");
  stmt->uses_kwargs = names.contains("kwargs");
  stmt->uses_caller = names.contains("caller");
  // A nested macro's free names are the enclosing macro's too.
  if (!macro_names_.empty()) macro_names_.back().insert(names.begin(), names.end());
  return ExpectBlockEnd();
}

absl::Status Parser::ParseCallBlock(Stmt* stmt) {
  stmt->kind = Stmt::Kind::kCallBlock;
  if (IsOp("(")) {  // caller parameters: {% call(x) m() %}
    Advance();
    while (!SkipOp(")")) {
      if (!stmt->params.empty()) TM_RETURN_IF_ERROR(ExpectOp(","));
      MacroParam param;
      TM_ASSIGN_OR_RETURN(param.name, ExpectName());
      if (SkipOp("=")) {
        TM_ASSIGN_OR_RETURN(param.default_value, ParseExpression());
      }
      stmt->params.push_back(std::move(param));
    }
  }
  TM_ASSIGN_OR_RETURN(stmt->expr, ParseExpression());
  if (stmt->expr->kind != Expr::Kind::kCall) return Error("expected a call in {% call %}");
  TM_RETURN_IF_ERROR(ExpectBlockEnd());
  std::string found;
  TM_RETURN_IF_ERROR(ParseBody({"endcall"}, &stmt->body, &found));
  return ExpectBlockEnd();
}

absl::Status Parser::ParseFilterBlock(Stmt* stmt) {
  stmt->kind = Stmt::Kind::kFilterBlock;
  TM_ASSIGN_OR_RETURN(stmt->filter, ParseFilter(nullptr, true));
  TM_RETURN_IF_ERROR(ExpectBlockEnd());
  std::string found;
  TM_RETURN_IF_ERROR(ParseBody({"endfilter"}, &stmt->body, &found));
  return ExpectBlockEnd();
}

absl::Status Parser::ParseWith(Stmt* stmt) {
  stmt->kind = Stmt::Kind::kWith;
  while (Current().type != TokenType::kBlockEnd) {
    if (!stmt->assignments.empty()) TM_RETURN_IF_ERROR(ExpectOp(","));
    TM_ASSIGN_OR_RETURN(std::string name, ExpectName());
    TM_RETURN_IF_ERROR(ExpectOp("="));
    TM_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
    stmt->assignments.emplace_back(std::move(name), std::move(value));
  }
  TM_RETURN_IF_ERROR(ExpectBlockEnd());
  std::string found;
  TM_RETURN_IF_ERROR(ParseBody({"endwith"}, &stmt->body, &found));
  return ExpectBlockEnd();
}

absl::Status Parser::ParseScope(Stmt* stmt, const std::string& tag) {
  stmt->kind = Stmt::Kind::kScope;
  if (tag == "block") {
    TM_ASSIGN_OR_RETURN(stmt->text, ExpectName());
    while (SkipName("scoped") || SkipName("required")) {
    }
  }
  TM_RETURN_IF_ERROR(ExpectBlockEnd());
  std::string found;
  TM_RETURN_IF_ERROR(ParseBody({"end" + tag}, &stmt->body, &found));
  if (tag == "block" && Current().type == TokenType::kName) Advance();  // {% endblock name %}
  return ExpectBlockEnd();
}

}  // namespace tokenmill::jinja
