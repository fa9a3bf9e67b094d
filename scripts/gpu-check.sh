#!/usr/bin/env bash
# One prepared check of the CUDA backend on a lent GPU machine (docs/cuda.md).
#
# The GPU machine has CUDA, CMake and PyTorch but none of our Debian libraries (abseil,
# spdlog, GoogleTest, Google Benchmark), so the check comes in two halves:
#
#   scripts/gpu-check.sh prepare   HERE (the dev machine). Builds the CUDA tests and
#       benchmarks for sm_90 in build-gpucheck/, then bundles them into build-gpu-bundle/
#       (git-ignored) with the shared libraries they load (the ldd closure minus glibc, the
#       CUDA driver and cuBLAS, which the GPU machine has) and the test data they read.
#       JOBS=n sets the build's parallelism (default 1: the dev machine is shared).
#
#   scripts/gpu-check.sh run       THERE, through the device tool, in one call:
#       run(command="bash scripts/gpu-check.sh run", carry=["build-gpu-bundle"],
#           timeout_s=560)
#       Measures the ceilings (device-to-device copy bandwidth, a bf16 8192^3 GEMM), runs
#       the CUDA tests, the kernel benchmarks (with PyTorch's SDPA and matmul on the same
#       shapes) and the end-to-end benchmark on demo:llama3-8b, in under 8 minutes, and
#       prints one table last. Logs and JSON go to $OUT (what the device tool brings back).
#       Tensor parallelism (NCCL, loaded from the machine: PyTorch's nvidia-nccl wheel or
#       the CUDA toolkit): with two GPUs or more, the tp = 2 against tp = 1 test and the
#       decode speedup (cuda_tp_bench, demo:llama3-8b); with one, both say they skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${GPU_CHECK_BUILD:-build-gpucheck}  # reuse an sm_90 CUDA build dir with GPU_CHECK_BUILD=...
BUNDLE=build-gpu-bundle
TARGETS=(backend_cuda_conformance_test backend_cuda_test backend_cuda_model_test
         cuda_kernels_bench cuda_e2e_bench engine_tp_test cuda_tp_bench)
# Binaries that load NCCL, which is never bundled (hundreds of MB): found on the GPU machine.
NCCL_TARGETS=(engine_tp_test cuda_tp_bench)

die() { echo "gpu-check: ERROR: $*" >&2; exit 1; }
note() { echo "gpu-check: $*"; }

# --- prepare (dev machine) ------------------------------------------------------------

# Shared libraries a binary loads that the GPU machine may lack: everything ldd resolves
# except glibc's own, the CUDA driver and the (very large) cuBLAS and NCCL libraries.
carried_libs() {
  ldd "$1" | awk '/=>/ && $3 ~ /^\// {print $3}' |
    grep -Ev '/(libc|libm|libpthread|libdl|librt|libresolv|ld-linux[^/]*)\.so' |
    grep -Ev '/lib(cuda|nvidia-[^/]*|cublas|cublasLt|nccl)\.so' || true
}

prepare() {
  command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || die "nvcc not found"
  note "configuring $BUILD (CUDA, sm_90)"
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTOKENMILL_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DTOKENMILL_BUILD_TESTS=ON -DTOKENMILL_BUILD_BENCH=ON >/dev/null
  note "building ${TARGETS[*]} (-j${JOBS:-1})"
  cmake --build "$BUILD" -j"${JOBS:-1}" --target "${TARGETS[@]}"
  rm -rf "$BUNDLE"
  mkdir -p "$BUNDLE/bin" "$BUNDLE/lib" "$BUNDLE/testdata/models/stories260K" "$BUNDLE/testdata/golden"
  for t in "${TARGETS[@]}"; do
    local bin
    bin=$(find "$BUILD" -type f -name "$t" -perm -u+x | head -1)
    [ -n "$bin" ] || die "built target $t not found under $BUILD"
    cp "$bin" "$BUNDLE/bin/"
    strip --strip-unneeded "$BUNDLE/bin/$t"
    carried_libs "$bin" | while read -r lib; do cp -nL "$lib" "$BUNDLE/lib/"; done
  done
  strip --strip-unneeded "$BUNDLE"/lib/*.so* 2>/dev/null || true
  local td=../shared/testdata
  if [ -d "$td" ]; then
    cp "$td/models/stories260K/stories260K.gguf" "$BUNDLE/testdata/models/stories260K/"
    cp "$td/golden/stories260K_greedy.json" "$BUNDLE/testdata/golden/"
  else
    note "no $td: the model tests will skip their golden cases there"
  fi
  {
    echo "commit $(git rev-parse HEAD)$(git diff --quiet || echo ' (dirty)')"
    echo "built $(date -u +%Y-%m-%dT%H:%MZ) with $(/usr/local/cuda/bin/nvcc --version | tail -1)"
  } >"$BUNDLE/manifest.txt"
  local mib
  mib=$(du -sm "$BUNDLE" | cut -f1)
  note "bundle $BUNDLE: ${mib} MiB ($(ls "$BUNDLE/lib" | wc -l) libraries)"
  [ "$mib" -lt 56 ] || die "bundle is ${mib} MiB; with the tree it must stay under 64 MiB"
  note "next: run(command=\"bash scripts/gpu-check.sh run\", carry=[\"$BUNDLE\"], timeout_s=560)"
}

# --- run (GPU machine) ----------------------------------------------------------------

# Directory holding libcublasLt.so.13 on this machine, or nothing.
cublas_dir() {
  local d
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -e "$d/libcublasLt.so.13" ] && { echo "$d"; return; }
  done
  d=$(python3 - <<'EOF' 2>/dev/null || true
import glob, os, site
for base in site.getsitepackages():
    for hit in glob.glob(os.path.join(base, "nvidia", "**", "libcublasLt.so.13*"), recursive=True):
        print(os.path.dirname(hit)); raise SystemExit
EOF
)
  [ -n "$d" ] && { echo "$d"; return; }
  find / -xdev -name 'libcublasLt.so.13*' 2>/dev/null | head -1 | xargs -r dirname
}

# Directory holding libnccl.so.2 on this machine, or nothing.
nccl_dir() {
  local d
  for d in /usr/local/cuda/lib /usr/local/cuda/lib64 /usr/lib/x86_64-linux-gnu; do
    [ -e "$d/libnccl.so.2" ] && { echo "$d"; return; }
  done
  d=$(python3 - <<'EOF' 2>/dev/null || true
import glob, os, site
for base in site.getsitepackages():
    for hit in glob.glob(os.path.join(base, "nvidia", "**", "libnccl.so.2*"), recursive=True):
        print(os.path.dirname(hit)); raise SystemExit
EOF
)
  [ -n "$d" ] && { echo "$d"; return; }
  find / -xdev -name 'libnccl.so.2*' 2>/dev/null | head -1 | xargs -r dirname
}

is_nccl_target() {
  local t
  for t in "${NCCL_TARGETS[@]}"; do [ "$1" = "$t" ] && return 0; done
  return 1
}

# step NAME TIMEOUT_S CMD...: runs CMD with a time limit, logs to $OUT/NAME.log, records
# "NAME rc seconds" in $OUT/steps.txt (rc 124: timed out, 125: no time left); never
# stops the script.
step() {
  local name=$1 limit=$2
  shift 2
  # Every step fits the whole run's budget, leaving time for the table.
  local left=$((DEADLINE - $(date +%s) - 10))
  if [ "$left" -lt 5 ]; then
    note "== $name SKIPPED: the ${BUDGET}s budget is spent"
    echo "$name 125 0" >>"$OUT/steps.txt"
    return 0
  fi
  [ "$limit" -le "$left" ] || limit=$left
  note "== $name (limit ${limit}s)"
  local t0 rc=0
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1 || rc=$?
  echo "$name $rc $(($(date +%s) - t0))" >>"$OUT/steps.txt"
  tail -n 4 "$OUT/$name.log" | sed 's/^/    /'
  [ "$rc" -eq 124 ] && note "$name TIMED OUT after ${limit}s"
  return 0
}

run() {
  BUDGET=${GPU_CHECK_BUDGET:-470}  # seconds for everything: under 8 minutes
  DEADLINE=$(($(date +%s) + BUDGET))
  : "${OUT:=$ROOT/gpu-check-out}"
  mkdir -p "$OUT"
  : >"$OUT/steps.txt"
  [ -d "$BUNDLE/bin" ] || die "no $BUNDLE/bin: run 'scripts/gpu-check.sh prepare' on the dev machine and carry $BUNDLE"
  command -v nvidia-smi >/dev/null || die "nvidia-smi not found: not a GPU machine?"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
  cat "$BUNDLE/manifest.txt"
  local cublas
  cublas=$(cublas_dir)
  [ -n "$cublas" ] || die "libcublasLt.so.13 not found on this machine (CUDA 13 toolkit or nvidia-cublas wheel)"
  local nccl
  nccl=$(nccl_dir)
  export LD_LIBRARY_PATH="$ROOT/$BUNDLE/lib:$cublas${nccl:+:$nccl}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  local missing
  missing=$(for b in "$BUNDLE"/bin/*; do
    if [ -z "$nccl" ] && is_nccl_target "$(basename "$b")"; then continue; fi
    ldd "$b" | grep 'not found' || true
  done | sort -u)
  [ -z "$missing" ] || die "unresolved libraries: $missing"
  local gpus
  gpus=$(nvidia-smi -L | grep -c '^GPU' || true)
  export TOKENMILL_TESTDATA="$ROOT/$BUNDLE/testdata" TOKENMILL_SOURCE_DIR="$ROOT"
  local B="$BUNDLE/bin"

  step ceilings_torch 60 python3 -c "$PY_SRC" ceilings "$OUT/torch_ceilings.json"
  step conformance_test 90 "$B/backend_cuda_conformance_test" --gtest_output="json:$OUT/conformance_test.json"
  step cuda_test 120 "$B/backend_cuda_test" --gtest_output="json:$OUT/cuda_test.json"
  step model_test 60 "$B/backend_cuda_model_test" --gtest_output="json:$OUT/model_test.json"
  step kernels_bench 120 "$B/cuda_kernels_bench" --benchmark_min_time=0.1 \
    --benchmark_out="$OUT/kernels_bench.json" --benchmark_out_format=json
  step torch_bench 60 python3 -c "$PY_SRC" kernels "$OUT/torch_bench.json"
  step e2e_bench 240 env TOKENMILL_E2E_OUTPUT="${E2E_OUTPUT:-1024}" "$B/cuda_e2e_bench" \
    --benchmark_out="$OUT/e2e_bench.json" --benchmark_out_format=json
  tensor_parallel "$gpus" "$nccl"
  py table "$OUT" | tee "$OUT/table.md"
}

# tensor_parallel GPUS NCCL_DIR: tp = 2 (NCCL) against tp = 1 where there are two GPUs; a
# line in $OUT/tp_skipped.txt says why it did not run otherwise.
tensor_parallel() {
  local gpus=$1 nccl=$2 B="$BUNDLE/bin"
  : >"$OUT/tp_skipped.txt"
  if [ -z "$nccl" ]; then
    note "== tensor parallelism SKIPPED: no libnccl.so.2 on this machine"
    echo "no libnccl.so.2 on this machine" >"$OUT/tp_skipped.txt"
    return 0
  fi
  # On one GPU this still checks that tp = 2 is refused cleanly; the NCCL test skips.
  step tp_test 120 "$B/engine_tp_test" \
    --gtest_filter='EngineTpTest.Nccl*:EngineTpTest.CudaRanks*' --gtest_output="json:$OUT/tp_test.json"
  if [ "$gpus" -lt 2 ]; then
    note "== tp=2 speedup SKIPPED: this machine has $gpus GPU(s); tensor parallelism needs 2"
    echo "$gpus GPU(s) here; tp = 2 needs 2" >"$OUT/tp_skipped.txt"
    return 0
  fi
  step tp_bench 180 env TOKENMILL_TP_PRESET="${TP_PRESET:-demo:llama3-8b}" "$B/cuda_tp_bench" \
    --benchmark_out="$OUT/tp_bench.json" --benchmark_out_format=json
}

# --- the Python half: PyTorch comparisons and the final table ---------------------------
# py WHAT ARGS...: WHAT is ceilings OUT.json | kernels OUT.json | table OUTDIR.
py() { python3 -c "$PY_SRC" "$@"; }
IFS= read -r -d '' PY_SRC <<'PY' || true
import glob, json, os, statistics, sys

def timed(fn, reps=20, warmup=3):
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); fn(); b.record(); b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times)

def ceilings(path):
    import torch
    x = torch.randn(1 << 28, device="cuda")  # 1 GiB of fp32
    y = torch.empty_like(x)
    copy = 2 * x.numel() * 4 / timed(lambda: y.copy_(x))
    del x, y
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn_like(a)
    gemm = 2 * 8192 ** 3 / timed(lambda: a @ b)
    out = {"copy_GBps": copy / 1e9, "gemm_bf16_TFLOPs": gemm / 1e12,
           "device": torch.cuda.get_device_name(), "torch": torch.__version__}
    json.dump(out, open(path, "w"), indent=1)
    print(out)

# The shapes of bench/kernels (Llama-3-8B: 32 heads, 8 KV heads, head_dim 128).
DECODE = [(1, 1024), (1, 8192), (1, 32768), (32, 1024), (32, 4096), (128, 2048), (256, 1024), (256, 4096)]
PREFILL = [512, 2048, 4096, 8192]
GEMMS = [(1, 4096, 4096), (8, 4096, 4096), (1, 1024, 4096), (1, 14336, 4096), (1, 4096, 14336),
         (1, 128256, 4096), (8, 14336, 4096), (8, 4096, 14336), (2048, 4096, 4096),
         (8192, 4096, 4096), (8192, 14336, 4096), (8192, 4096, 14336), (8192, 8192, 8192)]

def kernels(path):
    import torch
    import torch.nn.functional as F
    H, HKV, D = 32, 8, 128
    bf = dict(device="cuda", dtype=torch.bfloat16)
    res = {}
    for bsz, ctx in DECODE:
        q = torch.randn(bsz, H, 1, D, **bf)
        k, v = torch.randn(bsz, HKV, ctx, D, **bf), torch.randn(bsz, HKV, ctx, D, **bf)
        t = timed(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
        res[f"decode/{bsz}/{ctx}"] = 2 * bsz * ctx * HKV * D * 2 / t / 1e9
        del q, k, v
    for T in PREFILL:
        q = torch.randn(1, H, T, D, **bf)
        k, v = torch.randn(1, HKV, T, D, **bf), torch.randn(1, HKV, T, D, **bf)
        t = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), reps=10)
        res[f"prefill/{T}/0"] = 4 * H * D * T * (T + 1) / 2 / t / 1e12
        del q, k, v
    for m, n, k_ in GEMMS:
        x, w = torch.randn(m, k_, **bf), torch.randn(n, k_, **bf)
        t = timed(lambda: x @ w.t(), reps=10)
        res[f"gemm/{m}/{n}/{k_}"] = {"GBps": (n * k_ * 2 + m * k_ * 2 + m * n * 2) / t / 1e9,
                                     "TFLOPs": 2 * m * n * k_ / t / 1e12}
        del x, w
    json.dump(res, open(path, "w"), indent=1)
    print(f"{len(res)} shapes measured")

def load(path):
    try:
        return json.load(open(path))
    except Exception:
        return None

def gtest_summary(path):
    j = load(path)
    if j is None:
        return "no result (crashed or timed out: see the log)"
    passed = failed = skipped = 0
    failures = []
    for suite in j.get("testsuites", []):
        for t in suite.get("testsuite", []):
            if t.get("failures"):
                failed += 1
                failures.append(f"{suite['name']}.{t['name']}")
            elif t.get("result") == "SKIPPED":
                skipped += 1
            else:
                passed += 1
    s = f"{passed} passed, {failed} failed, {skipped} skipped"
    return s + (" (" + ", ".join(failures[:4]) + ("..." if len(failures) > 4 else "") + ")" if failures else "")

def bench_rows(path):
    j = load(path) or {}
    rows = {}
    for b in j.get("benchmarks", []):
        name = b["name"].replace("/manual_time", "").replace("/iterations:1", "")
        rows[name] = b
    return rows

def bench_rows_from_log(path):
    """Counters from Google Benchmark's console lines, for a run cut short before it
    wrote its JSON (counters print as name=value with k/M/G suffixes)."""
    rows = {}
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}
    try:
        lines = open(path).read().splitlines()
    except OSError:
        return rows
    for line in lines:
        if not line.startswith("BM_"):
            continue
        parts = line.split()
        name = parts[0].replace("/manual_time", "").replace("/iterations:1", "")
        b = {"name": name}
        if "ERROR OCCURRED" in line:
            b["error_occurred"] = True
            b["error_message"] = line.split("ERROR OCCURRED:", 1)[1].strip(" '")
        for p in parts[1:]:
            if "=" in p:
                k, v = p.split("=", 1)
                v = v.rstrip("/s")
                mult = scale.get(v[-1:], 1.0)
                try:
                    b[k] = float(v[:-1] if v[-1:] in scale else v) * mult
                except ValueError:
                    pass
        rows[name] = b
    return rows

def fmt(x, nd=1):
    return "n/a" if x is None else f"{x:.{nd}f}"

def table(outdir):
    steps = {}
    for line in open(os.path.join(outdir, "steps.txt")):
        name, rc, secs = line.split()
        steps[name] = (int(rc), int(secs))
    tc = load(os.path.join(outdir, "torch_ceilings.json")) or {}
    torch_k = load(os.path.join(outdir, "torch_bench.json")) or {}
    kb = bench_rows(os.path.join(outdir, "kernels_bench.json"))
    eb = bench_rows(os.path.join(outdir, "e2e_bench.json")) or \
        bench_rows_from_log(os.path.join(outdir, "e2e_bench.log"))
    gpu = open(os.path.join(outdir, "gpu.txt")).read().strip().splitlines()[-1]
    ceil = kb.get("BM_Ceilings", {})
    copy = ceil.get("copy_GB/s") or tc.get("copy_GBps")
    gemm = ceil.get("gemm_bf16_TFLOP/s") or tc.get("gemm_bf16_TFLOPs")
    rows = []  # (item, ours, unit, fraction, torch, target, verdict)
    def add(item, ours, unit, frac=None, torch=None, target=None):
        verdict = ""
        if target is not None:
            verdict = "n/a" if frac is None else ("OK" if frac >= target else "BELOW")
        rows.append((item, fmt(ours), unit, fmt(frac, 2), fmt(torch), "" if target is None else f">= {target:.2f}", verdict))
    add("copy bandwidth (ours / torch)", ceil.get("copy_GB/s"), "GB/s", None, tc.get("copy_GBps"))
    add("bf16 GEMM 8192^3 (cuBLASLt / torch)", ceil.get("gemm_bf16_TFLOP/s"), "TFLOP/s", None, tc.get("gemm_bf16_TFLOPs"))
    errors = {}
    for name, b in kb.items():
        if b.get("error_occurred"):
            errors.setdefault(b.get("error_message", "?"), []).append(name)
            continue
        p = dict(kv.split(":") for kv in name.split("/")[1:] if ":" in kv)
        if name.startswith("BM_DecodeAttention"):
            t = torch_k.get(f"decode/{p['batch']}/{p['ctx']}")
            add(f"decode attention B={p['batch']} ctx={p['ctx']}", b.get("GB/s"), "GB/s", b.get("of_copy"), t, 0.8)
        elif name.startswith("BM_PrefillAttention"):
            t = torch_k.get(f"prefill/{p['chunk']}/{p['cached']}")
            add(f"prefill attention {p['chunk']} new + {p['cached']} cached", b.get("TFLOP/s"), "TFLOP/s", b.get("of_gemm"), t, 0.5)
        elif name.startswith("BM_GemvShaped"):
            t = (torch_k.get(f"gemm/{p['M']}/{p['N']}/{p['K']}") or {}).get("GBps")
            add(f"GEMV-shaped M={p['M']} N={p['N']} K={p['K']}", b.get("GB/s"), "GB/s", b.get("of_copy"), t, 0.8)
        elif name.startswith("BM_LargeGemm"):
            t = (torch_k.get(f"gemm/{p['M']}/{p['N']}/{p['K']}") or {}).get("TFLOPs")
            add(f"GEMM M={p['M']} N={p['N']} K={p['K']}", b.get("TFLOP/s"), "TFLOP/s", b.get("of_gemm"), t)
        elif "GB/s" in b:
            add(name.replace("BM_", "").replace("/", " "), b.get("GB/s"), "GB/s", b.get("of_copy"))
        elif "rows/s" in b:
            add(name.replace("BM_", "").replace("/", " "), b["real_time"], b.get("time_unit", ""), None)
    for msg, names in errors.items():
        rows.append((f"{len(names)} kernel benchmarks ({names[0]}...)", "error", "", "", "", "", msg[:60]))
    d1 = eb.get("BM_DecodeBatch1", {})
    if d1 and not d1.get("error_occurred"):
        add("demo:llama3-8b batch-1 decode (roofline %s tok/s)" % fmt(d1.get("roofline_tokens/s")),
            d1.get("tokens/s"), "tokens/s", d1.get("of_roofline"), None, 0.85)
    else:
        rows.append(("demo:llama3-8b batch-1 decode", "n/a", "", "", "", ">= 0.85", (d1 or {}).get("error_message", "not run")[:40]))
    off = eb.get("BM_OfflineThroughput", {})
    if off and not off.get("error_occurred"):
        add("offline 1024 in / %d out, %d concurrent: total" % (off.get("output_len", 0), off.get("sequences", 0)),
            off.get("total_tokens/s"), "tokens/s")
        add("  ... of which output", off.get("output_tokens/s"), "tokens/s")
    else:
        rows.append(("offline 1024/1024 throughput", "n/a", "", "", "", "", (off or {}).get("error_message", "not run")[:40]))
    tp_skip = ""
    try:
        tp_skip = open(os.path.join(outdir, "tp_skipped.txt")).read().strip()
    except OSError:
        pass
    tb = bench_rows(os.path.join(outdir, "tp_bench.json")) or \
        bench_rows_from_log(os.path.join(outdir, "tp_bench.log"))
    for name, b in sorted(tb.items()):
        if not name.startswith("BM_TensorParallelDecode"):
            continue
        p = dict(kv.split(":") for kv in name.split("/")[1:] if ":" in kv)
        label = f"decode tp={p.get('tp')} batch={p.get('batch')} (NCCL)"
        if b.get("error_occurred"):
            rows.append((label, "n/a", "", "", "", "", b.get("error_message", "?")[:40]))
        else:
            speedup = " speedup %s" % fmt(b.get("speedup"), 2) if "speedup" in b else ""
            add(label + speedup, b.get("tokens/s"), "tokens/s")
    if tp_skip:
        rows.append(("tensor parallelism tp=2 vs tp=1", "skipped", "", "", "", "", tp_skip[:40]))
    for name, label in [("conformance_test", "conformance suite (cuda, cuda_fp32)"),
                        ("cuda_test", "CUDA backend tests"), ("model_test", "model end to end (goldens, HF refs)"),
                        ("tp_test", "tensor parallelism tests (NCCL; tp=2 needs 2 GPUs)")]:
        rows.append((label, gtest_summary(os.path.join(outdir, name + ".json")), "", "", "", "", ""))
    timeouts = [n for n, (rc, _) in steps.items() if rc in (124, 137)]
    # The record for docs/benchmarks.md, then the table, last.
    manifest = open("build-gpu-bundle/manifest.txt").read().strip().replace("\n", "; ")
    print(f"\nRecord for docs/benchmarks.md: {gpu}; {manifest}; torch {tc.get('torch', '?')}; "
          f"steps (rc, s): " + ", ".join(f"{n} {rc} {s}" for n, (rc, s) in steps.items()))
    if timeouts:
        print("TIMED OUT: " + ", ".join(timeouts))
    print()
    print("| check | ours | unit | of ceiling | torch | target | verdict |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")

what = sys.argv[1]
{"ceilings": ceilings, "kernels": kernels, "table": table}[what](*sys.argv[2:])
PY

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *)
    echo "usage: scripts/gpu-check.sh prepare|run   (see the header)" >&2
    exit 2
    ;;
esac
