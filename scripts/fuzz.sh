#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (the cpu-asan preset: clang, ASan + UBSan; plus
# coverage on all of tokenmill's code) and runs each for a bounded time. Exits non-zero when a target crashes,
# leaks, times out on one input or runs out of memory; the input is kept in
# $FUZZ_WORK_DIR/<target>/artifacts/ (reproduce: <build>/tests/fuzz/<target> <file>).
#
#   scripts/fuzz.sh                       # build, then every target for FUZZ_SECONDS each
#   scripts/fuzz.sh gguf_fuzz             # build, then one target
#   scripts/fuzz.sh --build-only          # configure + build, run nothing
#   scripts/fuzz.sh --run-only [targets]  # run already-built targets (the CTest smoke tests)
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 20)
#   FUZZ_BUILD_DIR  build directory (default build/fuzz)
#   FUZZ_JOBS       parallel compile jobs (default 1: the machines are shared)
#   FUZZ_WORK_DIR   scratch corpora and crash artifacts (default $FUZZ_BUILD_DIR/fuzz-work);
#                   the seed corpora in tests/fuzz/corpus/ are read, never written
#   CXX             clang++ to use (default: clang++, else clang++-14)
set -euo pipefail
cd "$(dirname "$0")/.."
SRC_DIR=$(pwd)

FUZZ_SECONDS=${FUZZ_SECONDS:-20}
BUILD_DIR=${FUZZ_BUILD_DIR:-build/fuzz}
JOBS=${FUZZ_JOBS:-1}
WORK_DIR=${FUZZ_WORK_DIR:-$BUILD_DIR/fuzz-work}

# Target -> max input length in bytes: large enough for the seeds and a few structures
# beyond, small enough that each input runs in milliseconds.
declare -A MAX_LEN=(
  [gguf_fuzz]=65536
  [safetensors_fuzz]=16384
  [model_config_fuzz]=8192
  [tokenizer_json_fuzz]=65536
  [encode_decode_fuzz]=8192
  [chat_template_fuzz]=8192
  [http_request_fuzz]=16384
)
ALL_TARGETS=(gguf_fuzz safetensors_fuzz model_config_fuzz tokenizer_json_fuzz
             encode_decode_fuzz chat_template_fuzz http_request_fuzz)

mode=all
if [ "${1:-}" = "--build-only" ] || [ "${1:-}" = "--run-only" ]; then
  mode=${1#--}
  shift
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")

find_clang() {
  if [ -n "${CXX:-}" ]; then echo "$CXX"; return; fi
  for c in clang++ clang++-14 clang++-15 clang++-16; do
    if command -v "$c" >/dev/null; then echo "$c"; return; fi
  done
  echo "fuzz.sh: clang++ not found (apt-get install clang libclang-rt-dev)" >&2
  exit 2
}

build() {
  local cxx
  cxx=$(find_clang)
  local cc=${cxx/clang++/clang}
  # The cpu-asan preset (clang, ASan + UBSan, -O1 with line tables, TM_DCHECKs on) plus
  # libFuzzer's coverage instrumentation of every library: the same tree also builds the
  # ASan + UBSan test binaries (CI's sanitizer stage, scripts/test.sh).
  cmake --preset cpu-asan -B "$BUILD_DIR" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link -fno-sanitize-recover=undefined" \
    -DTOKENMILL_FUZZ=ON -DTOKENMILL_FUZZ_SECONDS="$FUZZ_SECONDS" >/dev/null
  local buildable=()
  for t in "${targets[@]}"; do
    if ninja -C "$BUILD_DIR" -t targets all 2>/dev/null | grep -q "^$t:"; then
      buildable+=("$t")
    else
      echo "fuzz.sh: $t is not defined in this tree (skipped)"
    fi
  done
  targets=("${buildable[@]}")
  [ ${#targets[@]} -gt 0 ] || return 0
  cmake --build "$BUILD_DIR" -j"$JOBS" --target "${targets[@]}"
}

# Runs one target; prints "target executions seconds result".
run_one() {
  local t=$1
  local bin="$BUILD_DIR/tests/fuzz/$t"
  if [ ! -x "$bin" ]; then
    echo "fuzz.sh: $bin not built (skipped)"
    return 0
  fi
  local corpus="$WORK_DIR/$t/corpus" artifacts="$WORK_DIR/$t/artifacts"
  mkdir -p "$corpus" "$artifacts"
  local args=(-max_total_time="$FUZZ_SECONDS" -max_len="${MAX_LEN[$t]:-4096}" -timeout=10
              -rss_limit_mb=2560 -malloc_limit_mb=2048 -print_final_stats=1 -print_funcs=0
              -artifact_prefix="$artifacts/")
  local dict="tests/fuzz/dict/$t.dict"
  [ -f "$dict" ] && args+=(-dict="$dict")
  local log="$WORK_DIR/$t/fuzz.log"
  local start=$SECONDS rc=0
  # The scratch corpus comes first: libFuzzer adds new inputs to the first directory.
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
    "$bin" "${args[@]}" "$corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  local result=ok
  if [ $rc -ne 0 ]; then
    result="FAILED (rc $rc)"
    failures+=("$t")
    echo "---- $t: last lines of $log"
    grep -v '^#[0-9]' "$log" | tail -40
  fi
  summary+=("$(printf '%-22s %12s execs %5ss  %s' "$t" "${execs:-?}" $((SECONDS - start)) "$result")")
}

if [ "$mode" != run-only ]; then build; fi
[ "$mode" = build-only ] && exit 0

failures=()
summary=()
for t in "${targets[@]}"; do run_one "$t"; done
printf '%s\n' "${summary[@]}"
if [ ${#failures[@]} -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failures[*]} (inputs under $WORK_DIR/<target>/artifacts/)"
  exit 1
fi
