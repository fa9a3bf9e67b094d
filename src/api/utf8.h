// UTF-8 checks for text that crosses the wire (protobuf `string` fields and JSON must be
// valid UTF-8; a token's bytes alone often are not).
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace tokenmill {

// Strict UTF-8: no overlong forms, surrogates or code points above U+10FFFF.
bool IsValidUtf8(absl::string_view s);
// `s` with each invalid lead byte (and the continuation bytes after it) replaced by U+FFFD.
std::string SanitizeUtf8(absl::string_view s);

}  // namespace tokenmill
