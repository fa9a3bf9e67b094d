# CUDA backend tests, included by tests/backend/CMakeLists.txt. Label `gpu`; every case
# skips with a clear message on a machine without a GPU (they still build and run there).
if(TOKENMILL_CUDA_ENABLED AND TARGET tm_backend_cuda)
  tokenmill_add_test(backend_cuda_conformance_test
    SRCS ${TOKENMILL_BACKEND_CONFORMANCE_SRCS} cuda_conformance_backends.cc
    DEPS backend backend_cuda
    LABELS gpu)
  tokenmill_add_test(backend_cuda_test
    SRCS backend_test_util.cc cuda_backend_test.cc cuda_attention_test.cc cuda_graph_test.cc
         cuda_sampling_test.cc
    DEPS backend backend_cuda
    LABELS gpu)
  if(TARGET tm_model)
    tokenmill_add_test(backend_cuda_model_test
      SRCS cuda_model_test.cc
      DEPS model backend backend_cuda
      EXTERNAL nlohmann_json::nlohmann_json
      LABELS gpu)
  endif()
endif()
