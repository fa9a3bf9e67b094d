#!/usr/bin/env bash
# Sets up, builds and runs the whole test suite (the README's test command; .ci/run runs it).
# Release build with CUDA when nvcc is present (CUDA tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)"
ctest --preset release -j"$(nproc)" "$@"
