#!/usr/bin/env python3
"""Creates tiny random-weight Hugging Face checkpoints and their reference outputs.

Hugging Face transformers is the reference implementation for tokenmill's safetensors path.
For each model below this script:
  1. builds the model from a config with seeded random weights (torch.manual_seed),
  2. saves it with save_pretrained (safetensors) into tests/reference/hf/<name>/,
  3. reloads it from disk in float32 with attn_implementation="eager" and records the
     logits at every position of a few fixed token sequences, plus a 16-token greedy
     continuation of each (manual argmax loop, no EOS stopping),
  4. writes tests/reference/hf/<name>/reference.json.

The reference always comes from the checkpoint as reloaded from disk, so for the bf16 and
f16 checkpoints it is fp32 arithmetic on the rounded weights, which is what the CPU backend
computes. It is not run in CI; the committed files are what the C++ tests use.

Usage (from the repository root):
  python3 tests/reference/make_hf_reference.py            # (re)generate everything
  python3 tests/reference/make_hf_reference.py --check    # verify committed files reproduce

Needs: torch, transformers (>= 5), safetensors. See tests/reference/README.md.
"""

import argparse
import json
import math
import os
import shutil
import sys

import torch
import transformers
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_ROOT = os.path.join(HERE, "hf")
NUM_GREEDY_TOKENS = 16
SIGNIFICANT_DIGITS = 7
# A greedy step whose top-2 logits are closer than this could flip under fp32 reordering in
# another implementation; the script refuses to write such a reference.
MIN_GREEDY_MARGIN = 1e-3

# Common shape: tiny, but every head/group/rope dimension is non-trivial.
COMMON = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    rms_norm_eps=1e-5,
    max_position_embeddings=512,
    bos_token_id=1,
    eos_token_id=2,
    # Large enough that attention scores and rope really matter (the default 0.02 gives
    # nearly uniform attention and near-zero logits).
    initializer_range=0.15,
)

# name -> (model class, config, dtype saved on disk, save kwargs, config.json style)
#   style "legacy": rope_theta / rope_scaling / torch_dtype at top level, as the checkpoints on
#                   the Hub (Llama 3.1, Qwen2, Mistral) spell them (transformers 4.x).
#   style "v5":     what transformers 5 writes: rope_parameters {rope_type, rope_theta, ...}
#                   and "dtype"; a loader must understand both.
MODELS = {
    "llama3_gqa": (
        LlamaForCausalLM,
        LlamaConfig(**COMMON, vocab_size=256, head_dim=16, tie_word_embeddings=False,
                    rope_theta=500000.0,
                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 64}),
        torch.float32, {}, "legacy"),
    "qwen2_bias_tied": (
        Qwen2ForCausalLM,
        Qwen2Config(**COMMON, vocab_size=320, tie_word_embeddings=True, rope_theta=1000000.0,
                    use_sliding_window=False, sliding_window=None),
        torch.float32, {}, "legacy"),
    "mistral_gqa": (
        MistralForCausalLM,
        # head_dim 32 != hidden/heads (16), as in Mistral Nemo; 4 query heads share 1 KV head.
        MistralConfig(**{**COMMON, "num_key_value_heads": 1}, vocab_size=256, head_dim=32,
                      tie_word_embeddings=False, rope_theta=10000.0, sliding_window=None),
        torch.float32, {}, "legacy"),
    "llama_linear_bf16": (
        LlamaForCausalLM,
        LlamaConfig(**COMMON, vocab_size=256, head_dim=16, tie_word_embeddings=False,
                    rope_theta=10000.0, rope_scaling={"rope_type": "linear", "factor": 4.0}),
        torch.bfloat16, {}, "legacy"),
    "llama_sharded_f16": (
        LlamaForCausalLM,
        LlamaConfig(**COMMON, vocab_size=256, head_dim=16, tie_word_embeddings=False,
                    rope_theta=50000.0),
        torch.float16, {"max_shard_size": "100KB"}, "v5"),
}

# Fixed token sequences (same for every model; all ids < 256). The longest is longer than the
# llama3 model's original_max_position_embeddings (64).
def make_sequences():
    g = torch.Generator().manual_seed(1234)
    seqs = [[1]]
    for length in (17, 72):
        ids = torch.randint(3, 256, (length - 1,), generator=g).tolist()
        seqs.append([1] + ids)
    return seqs


def randomize_non_linear_params(model, seed):
    """Norm weights random around 1 and biases non-zero (default init makes them 1 and 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def rewrite_config_legacy(path):
    """Rewrites a transformers-5 config.json in the spelling of the checkpoints on the Hub."""
    with open(path) as f:
        cfg = json.load(f)
    rope = cfg.pop("rope_parameters")
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = None if rope.get("rope_type", "default") == "default" else rope
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def round_sig(x):
    if x == 0.0 or not math.isfinite(x):
        return x
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


def load(cls, model_dir):
    model = cls.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


@torch.no_grad()
def all_logits(model, ids):
    out = model(torch.tensor([ids]), use_cache=False)
    return out.logits[0].to(torch.float32)


@torch.no_grad()
def greedy(model, ids, n):
    """Manual argmax loop over full recomputation: no cache, no EOS stopping, no generate()
    defaults to second-guess. Returns (tokens, smallest top-1 minus top-2 logit gap)."""
    ids = list(ids)
    new, margin = [], float("inf")
    for _ in range(n):
        last = all_logits(model, ids)[-1]
        top2 = torch.topk(last, 2)
        margin = min(margin, (top2.values[0] - top2.values[1]).item())
        tok = int(torch.argmax(last).item())  # torch.argmax: first maximal index
        new.append(tok)
        ids.append(tok)
    return new, margin


def compute_reference(cls, model_dir, sequences):
    model = load(cls, model_dir)
    entries, worst = [], float("inf")
    for ids in sequences:
        logits = all_logits(model, ids)
        cont, margin = greedy(model, ids, NUM_GREEDY_TOKENS)
        worst = min(worst, margin)
        entries.append({
            "input_ids": ids,
            "logits": [[round_sig(v) for v in row] for row in logits.tolist()],
            "greedy_continuation": cont,
        })
    return model, entries, worst


def generate(name, spec, sequences):
    cls, config, dtype, save_kwargs, style = spec
    model_dir = os.path.join(OUT_ROOT, name)
    shutil.rmtree(model_dir, ignore_errors=True)
    torch.manual_seed(sum(map(ord, name)))
    model = cls._from_config(config, attn_implementation="eager", dtype=torch.float32)
    randomize_non_linear_params(model, seed=sum(map(ord, name)) + 1)
    model.eval()
    model.to(dtype).save_pretrained(model_dir, **save_kwargs)
    if style == "legacy":
        rewrite_config_legacy(os.path.join(model_dir, "config.json"))

    reloaded, entries, margin = compute_reference(cls, model_dir, sequences)
    if margin < MIN_GREEDY_MARGIN:
        sys.exit(f"{name}: greedy top-2 margin {margin:.2e} too small; change the seed")
    if dtype == torch.float32:
        # The reloaded checkpoint must compute what the in-memory model computed (up to BLAS
        # paths that depend on the alignment of mmap-ed weights: ~1e-6).
        for ids in sequences:
            a = all_logits(model, ids)
            b = all_logits(reloaded, ids)
            if not torch.allclose(a, b, rtol=1e-5, atol=1e-5):
                sys.exit(f"{name}: reloaded checkpoint differs from the saved model by "
                         f"{(a - b).abs().max().item():.2e}")
    with open(os.path.join(model_dir, "config.json")) as f:
        saved_config = json.load(f)
    reference = {
        "model": name,
        "architecture": cls.__name__,
        "weights_dtype": str(dtype).replace("torch.", ""),
        "config_style": style,
        "config": saved_config,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "attn_implementation": "eager",
        "logits_significant_digits": SIGNIFICANT_DIGITS,
        "num_greedy_tokens": NUM_GREEDY_TOKENS,
        "min_greedy_margin": round_sig(margin),
        "sequences": entries,
    }
    with open(os.path.join(model_dir, "reference.json"), "w") as f:
        json.dump(reference, f, separators=(",", ":"))
        f.write("\n")
    files = sorted(os.listdir(model_dir))
    size = sum(os.path.getsize(os.path.join(model_dir, x)) for x in files)
    print(f"{name}: {cls.__name__} {reference['weights_dtype']} min greedy margin "
          f"{margin:.3f}, {size / 1024:.0f} KiB: {', '.join(files)}")


def check(name, spec):
    """Reloads a committed checkpoint and confirms its reference.json reproduces."""
    cls = spec[0]
    model_dir = os.path.join(OUT_ROOT, name)
    with open(os.path.join(model_dir, "reference.json")) as f:
        ref = json.load(f)
    model = load(cls, model_dir)
    worst = 0.0
    for seq in ref["sequences"]:
        got = all_logits(model, seq["input_ids"])
        want = torch.tensor(seq["logits"])
        rel = ((got - want).abs() / want.abs().clamp_min(1e-6)).max().item()
        worst = max(worst, rel)
        cont, _ = greedy(model, seq["input_ids"], NUM_GREEDY_TOKENS)
        if cont != seq["greedy_continuation"]:
            sys.exit(f"{name}: greedy continuation differs: {cont} vs {seq['greedy_continuation']}")
    if worst > 1e-5:
        sys.exit(f"{name}: logits differ from reference.json (max relative error {worst:.2e})")
    print(f"{name}: OK (max relative error {worst:.2e})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="verify the committed checkpoints reproduce reference.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    sequences = make_sequences()
    for name, spec in MODELS.items():
        if args.check:
            check(name, spec)
        else:
            generate(name, spec, sequences)


if __name__ == "__main__":
    main()
