// Status helpers shared by every folder: absl::Status across boundaries, CHECK for
// broken invariants (see STYLE.md section 3).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define TM_CONCAT_INNER_(a, b) a##b
#define TM_CONCAT_(a, b) TM_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define TM_RETURN_IF_ERROR(expr)                  \
  do {                                            \
    ::absl::Status tm_status_ = (expr);           \
    if (!tm_status_.ok()) return tm_status_;      \
  } while (0)

// TM_ASSIGN_OR_RETURN(auto x, FunctionReturningStatusOr());
#define TM_ASSIGN_OR_RETURN(lhs, rexpr) \
  TM_ASSIGN_OR_RETURN_IMPL_(TM_CONCAT_(tm_statusor_, __LINE__), lhs, rexpr)
#define TM_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                              \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

namespace tokenmill::internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* cond, const std::string& msg);
}  // namespace tokenmill::internal

// Broken invariants abort with a message; they are bugs, never user errors.
#define TM_CHECK(cond, ...)                                                            \
  do {                                                                                 \
    if (!(cond)) [[unlikely]]                                                          \
      ::tokenmill::internal::CheckFailed(__FILE__, __LINE__, #cond,                    \
                                         ::absl::StrCat("" __VA_OPT__(, ) __VA_ARGS__)); \
  } while (0)

#ifdef NDEBUG
#define TM_DCHECK(cond, ...) \
  do {                       \
  } while (0)
#else
#define TM_DCHECK(cond, ...) TM_CHECK(cond __VA_OPT__(, ) __VA_ARGS__)
#endif
