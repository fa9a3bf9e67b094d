# Tokenizer tests (included by tests/tokenizer/CMakeLists.txt).
add_library(tm_tokenizer_testutil STATIC ${CMAKE_CURRENT_LIST_DIR}/tokenizer_test_util.cc)
target_include_directories(tm_tokenizer_testutil PUBLIC ${PROJECT_SOURCE_DIR}/tests)
target_link_libraries(tm_tokenizer_testutil PUBLIC tm_testing tm_tokenizer)
tokenmill_add_test(tokenizer_vocab_conformance_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/vocab_conformance_test.cc
  DEPS tokenizer tokenizer_testutil)
tokenmill_add_test(tokenizer_hf_conformance_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/hf_conformance_test.cc
  DEPS tokenizer tokenizer_testutil)
tokenmill_add_test(tokenizer_golden_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/golden_test.cc
  DEPS tokenizer tokenizer_testutil)
tokenmill_add_test(tokenizer_detokenizer_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/detokenizer_test.cc
  DEPS tokenizer tokenizer_testutil)
tokenmill_add_test(tokenizer_unicode_test
  SRCS ${CMAKE_CURRENT_LIST_DIR}/unicode_test.cc
  DEPS tokenizer)
