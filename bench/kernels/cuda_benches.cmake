# CUDA benchmarks (bench/kernels/cuda_*), included by bench/kernels/CMakeLists.txt.
# cuda_kernels_bench: ceilings, paged attention, row-wise ops, sampling, GEMMs.
# cuda_e2e_bench: the Llama graph on the CUDA backend with demo weights (decode tokens/s,
# offline throughput). cuda_tp_bench: decode at tensor parallelism 1 and 2 (NCCL). All
# skip every case without a GPU (or enough of them). scripts/gpu-check.sh runs them.
if(TOKENMILL_CUDA_ENABLED AND TARGET tm_backend_cuda)
  tokenmill_add_bench(cuda_kernels_bench
    SRCS cuda_bench_util.cc cuda_attention_bench.cc cuda_ops_bench.cc cuda_gemm_bench.cc
    DEPS backend_cuda)
  target_link_libraries(cuda_kernels_bench PRIVATE tm_kernels)
  if(TARGET tm_model)
    tokenmill_add_bench(cuda_e2e_bench
      SRCS cuda_bench_util.cc cuda_e2e_bench.cc
      DEPS model backend_cuda)
  endif()
  if(TARGET tm_engine)
    # tp = 1 against tp = 2 (NCCL) through the engine's executor; skips below 2 GPUs.
    tokenmill_add_bench(cuda_tp_bench SRCS cuda_bench_util.cc cuda_tp_bench.cc DEPS engine)
  endif()
endif()
