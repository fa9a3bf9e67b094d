// `tokenmill inspect`, `tokenize`, `detokenize`, `chat-template`.
#include <iostream>
#include <iterator>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "server/commands.h"
#include "spdlog/spdlog.h"
#include "tokenmill/model/demo_model.h"
#include "tokenmill/model/inspect.h"
#include "tokenmill/model/loader.h"
#include "tokenmill/tokenizer/chat_template.h"
#include "tokenmill/tokenizer/tokenizer.h"

namespace tokenmill {
namespace {

using json = nlohmann::ordered_json;

absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerFor(const std::string& path) {
  if (IsDemoSpec(path)) return MakeByteTokenizer();
  return LoadTokenizer(path);
}

int Fail(const absl::Status& s) {
  spdlog::error("{}", s.ToString());
  return 2;
}

struct TokenizeFlags {
  std::string model;
  std::string text;
  bool has_text = false;
  bool json_in = false;
  bool add_special = false, no_add_special = false;
  bool parse_special = false, no_parse_special = false;
  std::string ids;
  bool skip_special = false;
};

int RunTokenize(const TokenizeFlags& f) {
  auto tok = TokenizerFor(f.model);
  if (!tok.ok()) return Fail(tok.status());
  EncodeOptions opts;
  if (f.add_special) opts.add_special = true;
  if (f.no_add_special) opts.add_special = false;
  opts.parse_special = !f.no_parse_special;
  if (f.json_in) {
    const std::string input((std::istreambuf_iterator<char>(std::cin)),
                            std::istreambuf_iterator<char>());
    json in = json::parse(input, nullptr, false);
    if (!in.is_array()) return Fail(absl::InvalidArgumentError("--json: stdin must be a JSON array of strings"));
    json out = json::array();
    for (const json& s : in) {
      if (!s.is_string()) return Fail(absl::InvalidArgumentError("--json: every item must be a string"));
      auto ids = (*tok)->Encode(s.get<std::string>(), opts);
      if (!ids.ok()) return Fail(ids.status());
      out.push_back(*ids);
    }
    std::cout << out.dump() << std::endl;
    return 0;
  }
  if (!f.has_text) return Fail(absl::InvalidArgumentError("tokenize: give --text or --json"));
  auto ids = (*tok)->Encode(f.text, opts);
  if (!ids.ok()) return Fail(ids.status());
  std::string line;
  for (size_t i = 0; i < ids->size(); ++i) absl::StrAppend(&line, i ? " " : "", (*ids)[i]);
  std::cout << line << std::endl;
  return 0;
}

int RunDetokenize(const TokenizeFlags& f) {
  auto tok = TokenizerFor(f.model);
  if (!tok.ok()) return Fail(tok.status());
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(f.ids, absl::ByAnyChar(" ,"), absl::SkipEmpty())) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id)) {
      return Fail(absl::InvalidArgumentError(absl::StrCat("--ids: '", part, "' is not a token id")));
    }
    ids.push_back(id);
  }
  auto text = (*tok)->Decode(ids, f.skip_special);
  if (!text.ok()) return Fail(text.status());
  std::cout << *text << std::endl;
  return 0;
}

int RunChatTemplate(const std::string& model) {
  auto source = LoadChatTemplateSource(model);
  if (!source.ok()) return Fail(source.status());
  auto tmpl = ChatTemplate::Parse(source->source);
  if (!tmpl.ok()) return Fail(tmpl.status());
  const std::string input((std::istreambuf_iterator<char>(std::cin)),
                          std::istreambuf_iterator<char>());
  json req = json::parse(input, nullptr, false);
  if (!req.is_object()) {
    return Fail(absl::InvalidArgumentError("chat-template: stdin must be a JSON object with \"messages\""));
  }
  auto inputs = ChatTemplateInputsFromJson(req);
  if (!inputs.ok()) return Fail(inputs.status());
  if (!req.contains("bos_token") && source->bos_token) inputs->bos_token = *source->bos_token;
  if (!req.contains("eos_token") && source->eos_token) inputs->eos_token = *source->eos_token;
  auto text = tmpl->Render(*inputs);
  if (!text.ok()) return Fail(text.status());
  std::cout << *text;
  std::cout.flush();
  return 0;
}

}  // namespace

void AddInspectCommand(CLI::App& app, std::function<int()>* action) {
  auto path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("inspect", "Print a model's architecture, size and memory need");
  cmd->add_option("path", *path, "GGUF file, HF directory, or demo[:preset]")->required();
  cmd->callback([path, action] {
    *action = [path]() -> int {
      auto model = IsDemoSpec(*path) ? BuildDemoModel(*path) : LoadModel(*path);
      if (!model.ok()) return Fail(model.status());
      std::cout << FormatModelSummary(SummarizeModel(**model));
      return 0;
    };
  });
}

void AddTokenizerCommands(CLI::App& app, std::function<int()>* action) {
  auto f = std::make_shared<TokenizeFlags>();
  CLI::App* tok = app.add_subcommand("tokenize", "Print token ids of a text");
  tok->add_option("--model,-m", f->model,
                  "Model directory, tokenizer.json, tokenizer folder, GGUF file, or demo")
      ->required();
  tok->add_option("--text", f->text, "Text to tokenize")->each([f](const std::string&) {
    f->has_text = true;
  });
  tok->add_flag("--json", f->json_in, "Read a JSON array of strings on stdin");
  tok->add_flag("--add-special", f->add_special, "Add BOS/EOS as the template says");
  tok->add_flag("--no-add-special", f->no_add_special, "Add no special tokens");
  tok->add_flag("--parse-special", f->parse_special, "Recognise special tokens in text (default)");
  tok->add_flag("--no-parse-special", f->no_parse_special, "Treat special-token text as text");
  tok->callback([f, action] { *action = [f] { return RunTokenize(*f); }; });

  CLI::App* detok = app.add_subcommand("detokenize", "Print the text of token ids");
  detok->add_option("--model,-m", f->model, "As for tokenize")->required();
  detok->add_option("--ids", f->ids, "Token ids, space separated")->required();
  detok->add_flag("--skip-special", f->skip_special, "Leave special tokens (BOS, EOS...) out");
  detok->callback([f, action] { *action = [f] { return RunDetokenize(*f); }; });

  auto model = std::make_shared<std::string>();
  CLI::App* chat = app.add_subcommand(
      "chat-template", "Render {\"messages\": [...], \"add_generation_prompt\": true} from stdin");
  chat->add_option("--model,-m", *model, "Model or tokenizer directory, tokenizer_config.json, "
                                         ".jinja or GGUF file")
      ->required();
  chat->callback([model, action] { *action = [model] { return RunChatTemplate(*model); }; });
}

}  // namespace tokenmill
