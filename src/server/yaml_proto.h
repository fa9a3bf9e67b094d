// YAML onto protobuf messages, field by field through reflection, so one schema (a .proto
// file) defines and validates a config file. Errors name the field's path and the line:
//   "engine.max_num_seqz: unknown field (server.yaml:12)"
//   "server.grpc_port: expected an integer, got 'x' (server.yaml:4)"
#pragma once

#include <string>

#include "absl/status/status.h"
#include "google/protobuf/message.h"

namespace tokenmill {

// Parses `yaml_text` (named `source` in errors) onto `message`, which keeps fields the text
// does not set. Rules: a message is a mapping of its proto field names; a repeated field is a
// sequence; a map<string, M> field is a mapping; scalars parse strictly (bool is true/false,
// integers in range, finite numbers); `null` or an empty value leaves a field unset.
// Unknown fields, duplicate keys and YAML syntax errors are InvalidArgument.
absl::Status ParseYamlOntoMessage(const std::string& yaml_text, const std::string& source,
                                  google::protobuf::Message* message);

}  // namespace tokenmill
