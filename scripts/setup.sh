#!/usr/bin/env bash
# Installs the Debian packages tokenmill's build and tests need; only the missing ones.
# Idempotent: a second run installs nothing and exits 0.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libgtest-dev libgmock-dev libbenchmark-dev
  libspdlog-dev libfmt-dev nlohmann-json3-dev libyaml-cpp-dev libcli11-dev
  libpcre2-dev libxxhash-dev libutf8proc-dev
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libabsl-dev
  libcpp-httplib-dev libssl-dev openssl
  python3 gnuplot-nox
  prometheus  # tests/e2e/prometheus_test scrapes a live server with it
  clang libclang-rt-dev  # scripts/fuzz.sh: libFuzzer + clang's ASan/UBSan runtimes (CI's fuzz stage)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
