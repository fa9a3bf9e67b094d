# Tokenizer sources (included by src/tokenizer/CMakeLists.txt into tm_tokenizer).
list(APPEND TOKENIZER_SRCS
  ${CMAKE_CURRENT_LIST_DIR}/added_tokens.cc
  ${CMAKE_CURRENT_LIST_DIR}/bpe_model.cc
  ${CMAKE_CURRENT_LIST_DIR}/decode_table.cc
  ${CMAKE_CURRENT_LIST_DIR}/detokenizer.cc
  ${CMAKE_CURRENT_LIST_DIR}/gguf_loader.cc
  ${CMAKE_CURRENT_LIST_DIR}/hf_loader.cc
  ${CMAKE_CURRENT_LIST_DIR}/load_tokenizer.cc
  ${CMAKE_CURRENT_LIST_DIR}/model_tokenizer.cc
  ${CMAKE_CURRENT_LIST_DIR}/normalizer.cc
  ${CMAKE_CURRENT_LIST_DIR}/pre_tokenizer.cc
  ${CMAKE_CURRENT_LIST_DIR}/regex.cc
  ${CMAKE_CURRENT_LIST_DIR}/tiktoken_loader.cc
  ${CMAKE_CURRENT_LIST_DIR}/unicode.cc)
