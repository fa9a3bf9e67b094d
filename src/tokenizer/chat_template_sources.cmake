# Chat templates: the public API and the Jinja-subset interpreter behind it.
list(APPEND CHAT_TEMPLATE_SRCS
  chat_template.cc
  chat_template_loader.cc
  jinja/builtins.cc
  jinja/eval_expr.cc
  jinja/filters.cc
  jinja/filters_seq.cc
  jinja/json_value.cc
  jinja/lexer.cc
  jinja/methods.cc
  jinja/parser.cc
  jinja/parser_expr.cc
  jinja/predicates.cc
  jinja/py_text.cc
  jinja/renderer.cc
  jinja/value.cc
)

# Abseil components the interpreter uses beyond what tm_core brings. Deferred because
# tm_tokenizer is created after this file is included.
cmake_language(DEFER CALL target_link_libraries tm_tokenizer PUBLIC
  absl::flat_hash_map absl::flat_hash_set absl::str_format absl::time absl::civil_time absl::cord)
