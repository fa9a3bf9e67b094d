// Expression parsing, with jinja2's precedence (loosest first): conditional `x if c else y`,
// or, and, not, comparisons (== != < <= > >= in, not in), + -, ~, * / // %, **, unary - +,
// then primaries with postfix (.attr, [item], [a:b:c], call) and filters / tests.
#include <memory>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "tokenizer/jinja/parser.h"
#include "tokenmill/core/status.h"

namespace tokenmill::jinja {
namespace {

ExprPtr Combine(Expr::Kind kind, std::string op, ExprPtr left, ExprPtr right) {
  auto expr = std::make_unique<Expr>();
  expr->kind = kind;
  expr->line = left->line;
  expr->name = std::move(op);
  expr->children.push_back(std::move(left));
  expr->children.push_back(std::move(right));
  return expr;
}

}  // namespace

absl::StatusOr<ExprPtr> Parser::ParseTuple(bool with_condexpr, bool explicit_parentheses,
                                           const std::vector<std::string>& extra_end_names) {
  auto tuple = MakeExpr(Expr::Kind::kTuple);
  bool is_tuple = false;
  auto at_end = [&] {
    const Token& t = Current();
    if (t.type == TokenType::kVarEnd || t.type == TokenType::kBlockEnd) return true;
    if (t.type == TokenType::kOperator && t.text == ")") return true;
    if (t.type != TokenType::kName) return false;
    for (const auto& name : extra_end_names) {
      if (t.text == name) return true;
    }
    return false;
  };
  while (true) {
    if (!tuple->children.empty()) TM_RETURN_IF_ERROR(ExpectOp(","));
    if (at_end()) break;
    TM_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(with_condexpr));
    tuple->children.push_back(std::move(item));
    if (IsOp(",")) {
      is_tuple = true;
    } else {
      break;
    }
  }
  if (!is_tuple) {
    if (!tuple->children.empty()) return std::move(tuple->children[0]);
    if (!explicit_parentheses) {
      return Error(absl::StrCat("expected an expression, got ", Describe(Current())));
    }
  }
  return tuple;
}

absl::StatusOr<ExprPtr> Parser::ParseExpression(bool with_condexpr) {
  TM_RETURN_IF_ERROR(EnterNesting());
  absl::Cleanup leave = [this] { --depth_; };
  return with_condexpr ? ParseCondExpr() : ParseOr();
}

absl::StatusOr<ExprPtr> Parser::ParseCondExpr() {
  TM_ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
  while (SkipName("if")) {
    auto cond = MakeExpr(Expr::Kind::kCondExpr);
    TM_ASSIGN_OR_RETURN(ExprPtr test, ParseOr());
    ExprPtr otherwise;
    if (SkipName("else")) {
      TM_ASSIGN_OR_RETURN(otherwise, ParseCondExpr());
    }
    cond->line = expr->line;
    cond->children.push_back(std::move(test));
    cond->children.push_back(std::move(expr));
    cond->children.push_back(std::move(otherwise));
    expr = std::move(cond);
  }
  return expr;
}

absl::StatusOr<ExprPtr> Parser::ParseOr() {
  TM_ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
  while (SkipName("or")) {
    TM_ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
    left = Combine(Expr::Kind::kOr, "or", std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseAnd() {
  TM_ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
  while (SkipName("and")) {
    TM_ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
    left = Combine(Expr::Kind::kAnd, "and", std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseNot() {
  if (IsName("not")) {
    auto expr = MakeExpr(Expr::Kind::kUnary);
    Advance();
    TM_RETURN_IF_ERROR(EnterNesting());
    absl::Cleanup leave = [this] { --depth_; };
    expr->name = "not";
    TM_ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
    expr->children.push_back(std::move(operand));
    return expr;
  }
  return ParseCompare();
}

absl::StatusOr<ExprPtr> Parser::ParseCompare() {
  TM_ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
  ExprPtr compare;
  while (true) {
    std::string op;
    if (Current().type == TokenType::kOperator &&
        (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp("<=") || IsOp(">") || IsOp(">="))) {
      op = Current().text;
      Advance();
    } else if (SkipName("in")) {
      op = "in";
    } else if (IsName("not") && Look().type == TokenType::kName && Look().text == "in") {
      Advance();
      Advance();
      op = "notin";
    } else {
      break;
    }
    if (!compare) {
      compare = MakeExpr(Expr::Kind::kCompare);
      compare->line = first->line;
      compare->children.push_back(std::move(first));
    }
    TM_ASSIGN_OR_RETURN(ExprPtr operand, ParseMath1());
    compare->ops.push_back(op);
    compare->children.push_back(std::move(operand));
  }
  return compare ? std::move(compare) : std::move(first);
}

absl::StatusOr<ExprPtr> Parser::ParseMath1() {
  TM_ASSIGN_OR_RETURN(ExprPtr left, ParseConcat());
  while (IsOp("+") || IsOp("-")) {
    std::string op = Current().text;
    Advance();
    TM_ASSIGN_OR_RETURN(ExprPtr right, ParseConcat());
    left = Combine(Expr::Kind::kBinary, op, std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseConcat() {
  TM_ASSIGN_OR_RETURN(ExprPtr left, ParseMath2());
  while (SkipOp("~")) {
    TM_ASSIGN_OR_RETURN(ExprPtr right, ParseMath2());
    left = Combine(Expr::Kind::kBinary, "~", std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseMath2() {
  TM_ASSIGN_OR_RETURN(ExprPtr left, ParsePow());
  while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
    std::string op = Current().text;
    Advance();
    TM_ASSIGN_OR_RETURN(ExprPtr right, ParsePow());
    left = Combine(Expr::Kind::kBinary, op, std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParsePow() {
  TM_ASSIGN_OR_RETURN(ExprPtr left, ParseUnary(true));
  while (SkipOp("**")) {
    TM_ASSIGN_OR_RETURN(ExprPtr right, ParseUnary(true));
    left = Combine(Expr::Kind::kBinary, "**", std::move(left), std::move(right));
  }
  return left;
}

absl::StatusOr<ExprPtr> Parser::ParseUnary(bool with_filter) {
  TM_RETURN_IF_ERROR(EnterNesting());
  absl::Cleanup leave = [this] { --depth_; };
  ExprPtr node;
  if (IsOp("-") || IsOp("+")) {
    node = MakeExpr(Expr::Kind::kUnary);
    node->name = Current().text;
    Advance();
    TM_ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(false));
    node->children.push_back(std::move(operand));
  } else {
    TM_ASSIGN_OR_RETURN(node, ParsePrimary());
  }
  TM_ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
  if (with_filter) {
    TM_ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
  }
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParsePrimary() {
  const Token& token = Current();
  switch (token.type) {
    case TokenType::kName: {
      auto expr = MakeExpr(Expr::Kind::kLiteral);
      if (token.text == "true" || token.text == "True") {
        expr->literal = Value::Bool(true);
      } else if (token.text == "false" || token.text == "False") {
        expr->literal = Value::Bool(false);
      } else if (token.text == "none" || token.text == "None") {
        expr->literal = Value::None();
      } else {
        expr->kind = Expr::Kind::kName;
        expr->name = token.text;
        for (auto& names : macro_names_) names.insert(token.text);
      }
      Advance();
      return expr;
    }
    case TokenType::kString: {
      auto expr = MakeExpr(Expr::Kind::kLiteral);
      std::string text;
      while (Current().type == TokenType::kString) {  // adjacent literals concatenate
        text += Current().text;
        Advance();
      }
      expr->literal = Value::Str(std::move(text));
      return expr;
    }
    case TokenType::kInteger:
    case TokenType::kFloat: {
      auto expr = MakeExpr(Expr::Kind::kLiteral);
      expr->literal = token.type == TokenType::kInteger ? Value::Int(token.int_value)
                                                        : Value::Float(token.float_value);
      Advance();
      return expr;
    }
    case TokenType::kOperator:
      if (token.text == "(") {
        Advance();
        TM_ASSIGN_OR_RETURN(ExprPtr expr, ParseTuple(true, true));
        TM_RETURN_IF_ERROR(ExpectOp(")"));
        return expr;
      }
      if (token.text == "[" || token.text == "{") return ParseListOrDict(token.text == "{");
      break;
    default:
      break;
  }
  return Error(absl::StrCat("unexpected ", Describe(token)));
}

absl::StatusOr<ExprPtr> Parser::ParseListOrDict(bool is_dict) {
  auto expr = MakeExpr(is_dict ? Expr::Kind::kDict : Expr::Kind::kList);
  const char* close = is_dict ? "}" : "]";
  Advance();
  while (!IsOp(close)) {
    if (!expr->children.empty()) TM_RETURN_IF_ERROR(ExpectOp(","));
    if (IsOp(close)) break;
    TM_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
    expr->children.push_back(std::move(item));
    if (is_dict) {
      TM_RETURN_IF_ERROR(ExpectOp(":"));
      TM_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      expr->children.push_back(std::move(value));
    }
  }
  TM_RETURN_IF_ERROR(ExpectOp(close));
  return expr;
}

absl::StatusOr<ExprPtr> Parser::ParsePostfix(ExprPtr node) {
  while (true) {
    if (IsOp(".") || IsOp("[")) {
      TM_ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node)));
    } else if (IsOp("(")) {
      auto call = MakeExpr(Expr::Kind::kCall);
      call->line = node->line;
      call->children.push_back(std::move(node));
      TM_RETURN_IF_ERROR(ParseCallArgs(call.get()));
      node = std::move(call);
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> Parser::ParseFilterExpr(ExprPtr node) {
  while (true) {
    if (IsOp("|")) {
      TM_ASSIGN_OR_RETURN(node, ParseFilter(std::move(node), false));
    } else if (IsName("is")) {
      TM_ASSIGN_OR_RETURN(node, ParseTest(std::move(node)));
    } else if (IsOp("(")) {
      auto call = MakeExpr(Expr::Kind::kCall);
      call->children.push_back(std::move(node));
      TM_RETURN_IF_ERROR(ParseCallArgs(call.get()));
      node = std::move(call);
    } else {
      return node;
    }
  }
}

absl::StatusOr<ExprPtr> Parser::ParseSubscript(ExprPtr node) {
  if (SkipOp(".")) {
    if (Current().type == TokenType::kName) {
      auto expr = MakeExpr(Expr::Kind::kGetAttr);
      expr->name = Current().text;
      expr->children.push_back(std::move(node));
      Advance();
      return expr;
    }
    if (Current().type == TokenType::kInteger) {  // x.0 is x[0]
      auto expr = MakeExpr(Expr::Kind::kGetItem);
      auto index = MakeExpr(Expr::Kind::kLiteral);
      index->literal = Value::Int(Current().int_value);
      expr->children.push_back(std::move(node));
      expr->children.push_back(std::move(index));
      Advance();
      return expr;
    }
    return Error(absl::StrCat("expected a name after '.', got ", Describe(Current())));
  }
  TM_RETURN_IF_ERROR(ExpectOp("["));
  std::vector<ExprPtr> args;
  while (!IsOp("]")) {
    if (!args.empty()) TM_RETURN_IF_ERROR(ExpectOp(","));
    TM_ASSIGN_OR_RETURN(ExprPtr arg, ParseSubscribed());
    args.push_back(std::move(arg));
  }
  TM_RETURN_IF_ERROR(ExpectOp("]"));
  if (args.empty()) return Error("expected a subscript");
  ExprPtr key;
  if (args.size() == 1) {
    key = std::move(args[0]);
  } else {
    for (const auto& arg : args) {
      if (arg->kind == Expr::Kind::kSlice) return Error("multi-dimensional slices are unsupported");
    }
    key = MakeExpr(Expr::Kind::kTuple);
    key->children = std::move(args);
  }
  if (key->kind == Expr::Kind::kSlice) {  // a slice node arrives with a null object slot
    key->children[0] = std::move(node);
    return key;
  }
  auto expr = MakeExpr(Expr::Kind::kGetItem);
  expr->line = node->line;
  expr->children.push_back(std::move(node));
  expr->children.push_back(std::move(key));
  return expr;
}

absl::StatusOr<ExprPtr> Parser::ParseSubscribed() {
  auto slice = MakeExpr(Expr::Kind::kSlice);
  slice->children.push_back(nullptr);  // the sliced object, filled by ParseSubscript
  if (SkipOp(":")) {
    slice->children.push_back(nullptr);
  } else {
    TM_ASSIGN_OR_RETURN(ExprPtr start, ParseExpression());
    if (!SkipOp(":")) return start;
    slice->children.push_back(std::move(start));
  }
  auto optional_expr = [&]() -> absl::StatusOr<ExprPtr> {
    if (IsOp("]") || IsOp(",") || IsOp(":")) return ExprPtr();
    return ParseExpression();
  };
  TM_ASSIGN_OR_RETURN(ExprPtr stop, optional_expr());
  slice->children.push_back(std::move(stop));
  ExprPtr step;
  if (SkipOp(":")) {
    TM_ASSIGN_OR_RETURN(step, optional_expr());
  }
  slice->children.push_back(std::move(step));
  return slice;
}

absl::Status Parser::ParseCallArgs(Expr* call) {
  TM_RETURN_IF_ERROR(ExpectOp("("));
  bool first = true;
  while (!IsOp(")")) {
    if (!first) TM_RETURN_IF_ERROR(ExpectOp(","));
    first = false;
    if (IsOp(")")) break;
    if (IsOp("*") || IsOp("**")) return Error("*args / **kwargs in calls are not supported");
    if (Current().type == TokenType::kName && Look().type == TokenType::kOperator &&
        Look().text == "=") {
      std::string name = Current().text;
      Advance();
      Advance();
      TM_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
      call->kwargs.emplace_back(std::move(name), std::move(value));
      continue;
    }
    if (!call->kwargs.empty()) return Error("positional argument follows keyword argument");
    TM_ASSIGN_OR_RETURN(ExprPtr arg, ParseExpression());
    call->children.push_back(std::move(arg));
  }
  return ExpectOp(")");
}

absl::StatusOr<std::string> Parser::ParseDottedName() {
  TM_ASSIGN_OR_RETURN(std::string name, ExpectName());
  while (IsOp(".") && Look().type == TokenType::kName) {
    Advance();
    name += "." + Current().text;
    Advance();
  }
  return name;
}

absl::StatusOr<ExprPtr> Parser::ParseFilter(ExprPtr node, bool start_inline) {
  while (IsOp("|") || start_inline) {
    if (!start_inline) Advance();
    start_inline = false;
    auto filter = MakeExpr(Expr::Kind::kFilter);
    if (node) filter->line = node->line;
    TM_ASSIGN_OR_RETURN(filter->name, ParseDottedName());
    filter->children.push_back(std::move(node));  // may be null for {% filter %} blocks
    if (IsOp("(")) TM_RETURN_IF_ERROR(ParseCallArgs(filter.get()));
    node = std::move(filter);
  }
  return node;
}

absl::StatusOr<ExprPtr> Parser::ParseTest(ExprPtr node) {
  Advance();  // 'is'
  auto test = MakeExpr(Expr::Kind::kTest);
  test->line = node->line;
  test->negated = SkipName("not");
  TM_ASSIGN_OR_RETURN(test->name, ParseDottedName());
  test->children.push_back(std::move(node));
  const Token& t = Current();
  const bool starts_arg = t.type == TokenType::kName || t.type == TokenType::kString ||
                          t.type == TokenType::kInteger || t.type == TokenType::kFloat ||
                          (t.type == TokenType::kOperator && (t.text == "[" || t.text == "{"));
  if (IsOp("(")) {
    TM_RETURN_IF_ERROR(ParseCallArgs(test.get()));
  } else if (starts_arg && !IsName("else") && !IsName("or") && !IsName("and")) {
    if (IsName("is")) return Error("you cannot chain multiple tests with 'is'");
    TM_ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
    TM_ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
    test->children.push_back(std::move(arg));
  }
  return test;
}

}  // namespace tokenmill::jinja
