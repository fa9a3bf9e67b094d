#!/usr/bin/env bash
# Builds and runs the test suite under sanitizers, using the CMakePresets.json presets:
#   cpu-asan  AddressSanitizer + UndefinedBehaviorSanitizer (leaks included)
#   cpu-tsan  ThreadSanitizer (suppressions: tests/tsan.supp, see docs/testing.md)
# CPU only, RelWithDebInfo. Exits non-zero when a build fails or a test fails or reports.
#
#   scripts/sanitize.sh                   # both, whole suite
#   scripts/sanitize.sh asan              # one of them
#   scripts/sanitize.sh tsan -R 'kv|scheduler'   # further arguments go to ctest
#   scripts/sanitize.sh asan --build-only
#   scripts/sanitize.sh asan --targets "core_gguf_test api_test"   # build + run only these
#                                         # test binaries (a test's binary has its name; with
#                                         # your own -R/-L, that selects the tests instead)
#   ASAN_BUILD_DIR=build/fuzz scripts/sanitize.sh asan --as-is --targets ...
#                                         # a directory configured otherwise (CI: the clang
#                                         # ASan + UBSan fuzz build), not reconfigured
#
# Environment:
#   SANITIZE_JOBS       parallel compile jobs and ctest -j (default 1: shared machines)
#   ASAN_BUILD_DIR      build directory of cpu-asan (default: the preset's, build/cpu-asan)
#   TSAN_BUILD_DIR      build directory of cpu-tsan (default: build/cpu-tsan)
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${SANITIZE_JOBS:-1}
which=all
case "${1:-}" in
  asan|tsan|all) which=$1; shift ;;
esac
build_only=0
as_is=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build-only) build_only=1; shift ;;
    --as-is) as_is=1; shift ;;
    --targets) read -r -a targets <<<"$2"; shift 2 ;;
    *) break ;;
  esac
done

run_preset() {
  local preset=$1 dir=$2
  shift 2
  local dir_args=()
  [ -n "$dir" ] && dir_args=(-B "$dir")
  if [ $as_is -eq 1 ] && [ -f "$dir/CMakeCache.txt" ]; then
    echo "== $preset: $dir as configured"
  else
    echo "== $preset: configure"
    cmake --preset "$preset" "${dir_args[@]}" >/dev/null
  fi
  dir=${dir:-build/$preset}
  echo "== $preset: build ($dir, -j$JOBS)"
  local start=$SECONDS
  if [ ${#targets[@]} -gt 0 ]; then
    cmake --build "$dir" -j"$JOBS" --target "${targets[@]}"
  else
    cmake --build "$dir" -j"$JOBS"
  fi
  echo "== $preset: built in $((SECONDS - start)) s"
  [ $build_only -eq 1 ] && return 0
  echo "== $preset: test"
  start=$SECONDS
  # The sanitizer options (ASAN_OPTIONS, TSAN_OPTIONS...) are the test preset's
  # environment; read here because ctest --preset ignores --test-dir.
  local env_args
  mapfile -t env_args < <(python3 -c '
import json, sys
for p in json.load(open("CMakePresets.json"))["testPresets"]:
    if p["name"] == sys.argv[1]:
        for k, v in p.get("environment", {}).items():
            print(k + "=" + v.replace("${sourceDir}", sys.argv[2]))' "$preset" "$(pwd)")
  local select=()
  if [ ${#targets[@]} -gt 0 ] && ! [[ " $* " =~ \ -(R|L|-tests-regex|-label-regex)\  ]]; then
    select=(-R "^($(IFS='|'; echo "${targets[*]}"))\$")
  fi
  env "${env_args[@]}" ctest --test-dir "$dir" --output-on-failure -j"$JOBS" "${select[@]}" "$@"
  echo "== $preset: tests ran in $((SECONDS - start)) s"
}

status=0
if [ "$which" = asan ] || [ "$which" = all ]; then
  run_preset cpu-asan "${ASAN_BUILD_DIR:-}" "$@" || status=1
fi
if [ "$which" = tsan ] || [ "$which" = all ]; then
  run_preset cpu-tsan "${TSAN_BUILD_DIR:-}" "$@" || status=1
fi
exit $status
