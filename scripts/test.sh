#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (the README's test command; .ci/run runs it),
# then CI's extra stages (docs/testing.md, "What CI runs, and why"):
#   fuzz  every libFuzzer target fuzzes TOKENMILL_CI_FUZZ_SECONDS (default 15) in the clang
#         ASan + UBSan build, build/fuzz (scripts/fuzz.sh)
#   asan  the suites that face untrusted input or run threads, under ASan + UBSan, built in
#         that same tree
#   tsan  the threaded suites under TSan (the cpu-tsan preset, build/cpu-tsan)
# The extra stages need clang (scripts/setup.sh installs it) and are skipped, with a
# message, without it. Arguments go to the release suite's ctest.
#
#   TOKENMILL_CI_FAST=1 bash scripts/test.sh -R kv   # release suite only (a quick local run)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)

bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$JOBS"
ctest --preset release -j"$JOBS" "$@"

if [ "${TOKENMILL_CI_FAST:-0}" = 1 ]; then
  echo "test.sh: TOKENMILL_CI_FAST=1: fuzz and sanitizer stages skipped"
  exit 0
fi
if ! command -v clang++ >/dev/null; then
  echo "test.sh: clang++ not found: fuzz and sanitizer stages skipped (bash scripts/setup.sh)"
  exit 0
fi

# The subsets: code that parses what clients send (api, server, the HTTP front end end to
# end; the file parsers are the fuzz targets above), the block and queue bookkeeping (kv,
# scheduler), and code that runs threads (engine, api, parallel, metrics' pollers, the CPU
# backend's pool). Sized to keep CI under 40 minutes on 2 cores (measured costs:
# docs/testing.md); scripts/sanitize.sh runs the whole suite under both.
ASAN_TESTS=(kv_block_pool_test kv_cache_manager_test kv_cache_random_test scheduler_test
            scheduler_waiting_queue_test scheduler_random_test engine_test fault_injection_test
            api_test server_test e2e_http_test e2e_security_test)
# api_test and the e2e tests stay out of TSan here: Debian's gRPC is not TSan-instrumented and
# its reports vary from run to run (docs/testing.md); they run under ASan + UBSan above.
TSAN_TESTS=(parallel_loopback_test parallel_tcp_bootstrap_test engine_test fault_injection_test
            server_test metrics_registry_test metrics_energy_test backend_cpu_test)

stage_times=()
stage() {  # stage NAME COMMAND...: runs it, records its wall time
  local name=$1 start=$SECONDS
  shift
  echo "==== test.sh: $name"
  "$@"
  stage_times+=("$(printf '%-28s %5d s' "$name" $((SECONDS - start)))")
}

export FUZZ_JOBS=$JOBS SANITIZE_JOBS=$JOBS
stage "fuzz: build" bash scripts/fuzz.sh --build-only
stage "fuzz: smoke" env FUZZ_SECONDS="${TOKENMILL_CI_FUZZ_SECONDS:-15}" \
  bash scripts/fuzz.sh --run-only
stage "asan+ubsan: build + test" env ASAN_BUILD_DIR=build/fuzz \
  bash scripts/sanitize.sh asan --as-is --targets "${ASAN_TESTS[*]}"
stage "tsan: build + test" bash scripts/sanitize.sh tsan --targets "${TSAN_TESTS[*]}"
printf 'test.sh: %s\n' "${stage_times[@]}"
