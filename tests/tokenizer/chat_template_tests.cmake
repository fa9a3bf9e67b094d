# Chat template conformance (real templates vs. Python jinja2 goldens) and interpreter units.
tokenmill_add_test(tokenizer_chat_template_test
  SRCS chat_template_test.cc jinja_interpreter_test.cc jinja_robustness_test.cc
  DEPS tokenizer)
