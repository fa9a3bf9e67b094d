#!/usr/bin/env bash
# Builds and runs every Google Benchmark micro-benchmark: the binaries bench/*/CMakeLists.txt
# register with tokenmill_add_bench (the global TOKENMILL_BENCHES property, i.e. the
# dependencies of the `bench` target). Load tests of a whole server are `tokenmill bench`
# (docs/bench.md), not this script.
#
#   scripts/bench.sh [--build DIR] [--no-build] [--list] [--filter REGEX] [--out DIR]
#                    [--min-time SECONDS] [-- FLAGS FOR EVERY BINARY]
#
#   --build DIR    build directory (default build/release, configured with the release preset
#                  when absent)
#   --no-build     run what is built
#   --list         print the benchmark binaries and exit
#   --filter RE    --benchmark_filter for every binary (binaries with no match print nothing)
#   --out DIR      also write DIR/<binary>.json (Google Benchmark JSON, with its context:
#                  date, host, CPU, caches, library build type)
#   --min-time S   --benchmark_min_time (seconds, e.g. 0.1 for a quick pass)
# JOBS=N limits build parallelism (default: all cores). Exit status: 1 when a binary failed.
set -euo pipefail
cd "$(dirname "$0")/.."

build=build/release
do_build=1
list=0
filter=""
out=""
min_time=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --list) list=1; shift ;;
    --filter) filter="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --min-time) min_time="$2"; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$do_build" = 1 ]; then
  if [ ! -f "$build/CMakeCache.txt" ]; then
    if [ "$build" = build/release ]; then
      cmake --preset release >/dev/null
    else
      echo "bench.sh: $build is not a configured build directory" >&2
      exit 2
    fi
  fi
  cmake --build "$build" --target bench -j"${JOBS:-$(nproc)}"
fi

# The binaries: the inputs of the `bench` target as Ninja knows them; without Ninja, every
# executable named *_bench under the build's bench/ folder.
binaries=()
if [ -f "$build/build.ninja" ]; then
  while IFS= read -r path; do
    [ -x "$build/$path" ] && [ -f "$build/$path" ] && binaries+=("$build/$path")
  done < <(ninja -C "$build" -t query bench/bench 2>/dev/null |
             awk '/^  input:/ {inputs = 1; next} /^  outputs:/ {inputs = 0} inputs {print $1}')
fi
if [ ${#binaries[@]} -eq 0 ] && [ -d "$build/bench" ]; then
  while IFS= read -r path; do binaries+=("$path"); done < <(
    find "$build/bench" -type f -name '*_bench' -perm -u+x | sort)
fi
if [ ${#binaries[@]} -eq 0 ]; then
  echo "bench.sh: no benchmark binary in $build (configured with TOKENMILL_BUILD_BENCH=OFF?)" >&2
  exit 1
fi

if [ "$list" = 1 ]; then
  printf '%s\n' "${binaries[@]}"
  exit 0
fi

[ -n "$out" ] && mkdir -p "$out"
failed=()
for bin in "${binaries[@]}"; do
  name=$(basename "$bin")
  args=()
  [ -n "$filter" ] && args+=("--benchmark_filter=$filter")
  [ -n "$min_time" ] && args+=("--benchmark_min_time=$min_time")
  [ -n "$out" ] && args+=("--benchmark_out=$out/$name.json" "--benchmark_out_format=json")
  echo "=== $name"
  if ! "$bin" "${args[@]}" "${extra[@]}"; then
    failed+=("$name")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "bench.sh: failed: ${failed[*]}" >&2
  exit 1
fi
echo "bench.sh: ${#binaries[@]} benchmark binaries ran${out:+, JSON in $out}"
