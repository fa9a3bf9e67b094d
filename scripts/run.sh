#!/usr/bin/env bash
# Sets up, builds and starts tokenmill on its embedded default model (the README's main command).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" --target tokenmill
exec ./build/release/src/server/tokenmill serve --model demo "$@"
