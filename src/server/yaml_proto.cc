#include "server/yaml_proto.h"

#include <cmath>
#include <limits>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "tokenmill/core/status.h"
#include "yaml-cpp/yaml.h"

namespace tokenmill {
namespace {

namespace pb = google::protobuf;

class Mapper {
 public:
  explicit Mapper(std::string source) : source_(std::move(source)) {}

  absl::Status Message(const YAML::Node& node, const std::string& path, pb::Message* msg) {
    if (node.IsNull()) return absl::OkStatus();
    if (!node.IsMap()) return Error(node, path.empty() ? "config" : path, "expected a mapping");
    const pb::Descriptor* desc = msg->GetDescriptor();
    std::set<std::string> seen;
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) return Error(kv.first, path, "keys must be plain names");
      const std::string name = kv.first.Scalar();
      const std::string at = path.empty() ? name : absl::StrCat(path, ".", name);
      if (!seen.insert(name).second) return Error(kv.first, at, "duplicate field");
      const pb::FieldDescriptor* field = desc->FindFieldByName(name);
      if (field == nullptr) return Error(kv.first, at, "unknown field");
      TM_RETURN_IF_ERROR(Field(kv.second, at, msg, field));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Error(const YAML::Node& node, const std::string& path, absl::string_view what) {
    const YAML::Mark m = node.Mark();
    std::string where = source_;
    if (m.line >= 0) absl::StrAppend(&where, ":", m.line + 1);
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what, " (", where, ")"));
  }

  absl::Status Field(const YAML::Node& node, const std::string& path, pb::Message* msg,
                     const pb::FieldDescriptor* field) {
    const pb::Reflection* refl = msg->GetReflection();
    if (node.IsNull()) return absl::OkStatus();
    if (field->is_map()) {
      if (!node.IsMap()) return Error(node, path, "expected a mapping");
      const pb::FieldDescriptor* key = field->message_type()->map_key();
      const pb::FieldDescriptor* value = field->message_type()->map_value();
      std::set<std::string> seen;
      for (const auto& kv : node) {
        const std::string name = kv.first.IsScalar() ? kv.first.Scalar() : "";
        const std::string at = absl::StrCat(path, ".", name);
        if (name.empty()) return Error(kv.first, path, "keys must be non-empty names");
        if (!seen.insert(name).second) return Error(kv.first, at, "duplicate key");
        pb::Message* entry = refl->AddMessage(msg, field);
        entry->GetReflection()->SetString(entry, key, name);
        TM_RETURN_IF_ERROR(Value(kv.second, at, entry, value));
      }
      return absl::OkStatus();
    }
    if (field->is_repeated()) {
      if (!node.IsSequence()) return Error(node, path, "expected a list");
      for (size_t i = 0; i < node.size(); ++i) {
        const std::string at = absl::StrCat(path, "[", i, "]");
        if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
          TM_RETURN_IF_ERROR(Message(node[i], at, refl->AddMessage(msg, field)));
        } else {
          TM_RETURN_IF_ERROR(Scalar(node[i], at, msg, field, /*repeated=*/true));
        }
      }
      return absl::OkStatus();
    }
    return Value(node, path, msg, field);
  }

  absl::Status Value(const YAML::Node& node, const std::string& path, pb::Message* msg,
                     const pb::FieldDescriptor* field) {
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      return Message(node, path, msg->GetReflection()->MutableMessage(msg, field));
    }
    return Scalar(node, path, msg, field, /*repeated=*/false);
  }

  absl::Status Scalar(const YAML::Node& node, const std::string& path, pb::Message* msg,
                      const pb::FieldDescriptor* field, bool repeated) {
    const pb::Reflection* refl = msg->GetReflection();
    if (node.IsNull() && !repeated) return absl::OkStatus();
    if (!node.IsScalar()) return Error(node, path, absl::StrCat("expected ", TypeName(field)));
    const std::string& text = node.Scalar();
    const auto bad = [&] {
      return Error(node, path, absl::StrCat("expected ", TypeName(field), ", got '", text, "'"));
    };
    switch (field->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING:
        repeated ? refl->AddString(msg, field, text) : refl->SetString(msg, field, text);
        return absl::OkStatus();
      case pb::FieldDescriptor::CPPTYPE_BOOL: {
        const std::string t = absl::AsciiStrToLower(text);
        if (t != "true" && t != "false") return bad();
        repeated ? refl->AddBool(msg, field, t == "true") : refl->SetBool(msg, field, t == "true");
        return absl::OkStatus();
      }
      case pb::FieldDescriptor::CPPTYPE_INT32: {
        int32_t v;
        if (!absl::SimpleAtoi(text, &v)) return bad();
        repeated ? refl->AddInt32(msg, field, v) : refl->SetInt32(msg, field, v);
        return absl::OkStatus();
      }
      case pb::FieldDescriptor::CPPTYPE_INT64: {
        int64_t v;
        if (!absl::SimpleAtoi(text, &v)) return bad();
        repeated ? refl->AddInt64(msg, field, v) : refl->SetInt64(msg, field, v);
        return absl::OkStatus();
      }
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      case pb::FieldDescriptor::CPPTYPE_FLOAT: {
        double v;
        if (!absl::SimpleAtod(text, &v) || !std::isfinite(v)) return bad();
        if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_FLOAT) {
          const auto f = static_cast<float>(v);
          repeated ? refl->AddFloat(msg, field, f) : refl->SetFloat(msg, field, f);
        } else {
          repeated ? refl->AddDouble(msg, field, v) : refl->SetDouble(msg, field, v);
        }
        return absl::OkStatus();
      }
      default:
        return Error(node, path, "field type not supported in YAML configs");
    }
  }

  static const char* TypeName(const pb::FieldDescriptor* f) {
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING:
        return "a string";
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        return "true or false";
      case pb::FieldDescriptor::CPPTYPE_INT32:
      case pb::FieldDescriptor::CPPTYPE_INT64:
        return "an integer";
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      case pb::FieldDescriptor::CPPTYPE_FLOAT:
        return "a number";
      default:
        return "a value";
    }
  }

  const std::string source_;
};

}  // namespace

absl::Status ParseYamlOntoMessage(const std::string& yaml_text, const std::string& source,
                                  google::protobuf::Message* message) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", e.mark.line + 1, ":", e.mark.column + 1, ": ", e.msg));
  }
  try {
    return Mapper(source).Message(root, "", message);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", e.what()));
  }
}

}  // namespace tokenmill
