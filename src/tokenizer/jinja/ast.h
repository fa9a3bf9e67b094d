// Syntax tree of a parsed template. Built once by the parser, then read-only: several
// threads may render the same tree at once.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace tokenmill::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,  // literal
    kName,     // name
    kList,     // children
    kTuple,    // children
    kDict,     // children: key0, value0, key1, value1, ...
    kGetAttr,  // children[0].name
    kGetItem,  // children[0][children[1]]
    kSlice,    // children[0][children[1]:children[2]:children[3]] (null = omitted)
    kCall,     // children[0](children[1:], kwargs)
    kFilter,   // children[0] | name(children[1:], kwargs)
    kTest,     // children[0] is [not] name(children[1:], kwargs)
    kUnary,    // op children[0]; op is "-", "+" or "not"
    kBinary,   // children[0] op children[1]; op is + - * / // % ** ~
    kAnd,
    kOr,
    kCompare,   // children[0] ops[0] children[1] ops[1] children[2] ...
    kCondExpr,  // children[1] if children[0] else children[2] (children[2] may be null)
  };
  Kind kind;
  int line = 0;
  Value literal;
  std::string name;  // variable, attribute, filter or test name; operator for kUnary/kBinary
  std::vector<ExprPtr> children;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;  // kCompare: "==", "!=", "<", "<=", ">", ">=", "in", "notin"
  bool negated = false;          // kTest: "is not"
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using StmtList = std::vector<StmtPtr>;

// Assignment target of for / set: a name, a tuple of names, or namespace.attribute.
struct Target {
  std::vector<std::string> names;  // one name, or several for tuple unpacking
  bool is_tuple = false;
  std::string attribute;  // set only for {% set ns.attr = ... %} (names[0] is ns)
};

struct MacroParam {
  std::string name;
  ExprPtr default_value;  // null when required
};

struct Stmt {
  enum class Kind {
    kText,         // text
    kOutput,       // {{ expr }}
    kIf,           // branches: (condition, body); a null condition is `else`
    kFor,          // target in expr [if filter] body [else else_body]
    kSet,          // target = expr
    kSetBlock,     // {% set target %}body{% endset %} (optional filter in `filter`)
    kMacro,        // macro name(params) body
    kCallBlock,    // {% call expr %}body{% endcall %}: expr called with caller()
    kFilterBlock,  // {% filter f %}body{% endfilter %}: `filter` applied to the body
    kWith,         // {% with a=1 %}body{% endwith %} (assignments in `assignments`)
    kScope,        // body rendered in place ({% block %}, {% generation %})
    kBreak,
    kContinue,
  };
  Kind kind;
  int line = 0;
  std::string text;
  ExprPtr expr;    // output / for iterable / set value / call expression
  ExprPtr filter;  // for-loop condition, or a kFilter expression whose children[0] is null
  Target target;
  StmtList body;
  StmtList else_body;
  std::vector<std::pair<ExprPtr, StmtList>> branches;
  std::vector<MacroParam> params;
  std::vector<std::pair<std::string, ExprPtr>> assignments;
  bool uses_varargs = false;  // macro body mentions `varargs` / `kwargs` / `caller`
  bool uses_kwargs = false;
  bool uses_caller = false;
};

struct Template {
  StmtList body;
};

}  // namespace tokenmill::jinja
