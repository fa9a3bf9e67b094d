#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets (tests/fuzz/corpus/<target>/).

Seeds are small: hand-made edge cases plus cut-down real files from the test data
(../shared/testdata, or $TOKENMILL_TESTDATA) and tests/reference. Files named regress-*
are inputs that once found a bug (added by hand, kept here). Regenerate only on purpose:

    python3 tests/fuzz/make_seeds.py      # rewrites tests/fuzz/corpus/ (~0.3 MB)

Needs only the Python standard library. The output is deterministic.
"""
import json
import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = Path(os.environ.get("TOKENMILL_TESTDATA", ROOT.parent / "shared" / "testdata"))
OUT = ROOT / "tests" / "fuzz" / "corpus"


def write(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


# ----------------------------------------------------------------------------- GGUF
# Metadata value types (gguf.h).
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
              BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}


def gguf_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gguf_value(t, v):
    if t == STR:
        return gguf_str(v)
    if t == ARR:
        et, items = v
        out = struct.pack("<IQ", et, len(items))
        return out + b"".join(gguf_value(et, x) for x in items)
    return struct.pack(SCALAR_FMT[t], v)


def read_gguf_metadata(path):
    """(version, [(key, type, value)]) of a GGUF file; arrays as (elem_type, list)."""
    b = Path(path).read_bytes()
    pos = 4
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", b, pos)
    pos += 20

    def rd_str():
        nonlocal pos
        (n,) = struct.unpack_from("<Q", b, pos)
        s = b[pos + 8:pos + 8 + n]
        pos += 8 + n
        return s

    def rd_val(t):
        nonlocal pos
        if t == STR:
            return rd_str()
        if t == ARR:
            et, n = struct.unpack_from("<IQ", b, pos)
            pos += 12
            return (et, [rd_val(et) for _ in range(n)])
        fmt = SCALAR_FMT[t]
        (v,) = struct.unpack_from(fmt, b, pos)
        pos += struct.calcsize(fmt)
        return v

    kvs = []
    for _ in range(n_kv):
        key = rd_str().decode()
        (t,) = struct.unpack_from("<I", b, pos)
        pos += 4
        kvs.append((key, t, rd_val(t)))
    return version, kvs


def make_gguf(kvs, tensors, version=3, alignment=32):
    """tensors: [(name, ggml_type, ne (innermost first), data bytes)]."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, t, v in kvs:
        out += gguf_str(key) + struct.pack("<I", t) + gguf_value(t, v)
    offset = 0
    infos = b""
    blobs = []
    for name, gtype, ne, data in tensors:
        infos += gguf_str(name) + struct.pack("<I", len(ne))
        infos += b"".join(struct.pack("<Q", x) for x in ne)
        infos += struct.pack("<IQ", gtype, offset)
        pad = (-len(data)) % alignment
        blobs.append(data + b"\0" * pad)
        offset += len(data) + pad
    out += infos
    out += b"\0" * ((-len(out)) % alignment)
    return out + b"".join(blobs)


def f32(n, seed=1):
    return b"".join(struct.pack("<f", ((i * 7919 + seed) % 97) / 97.0 - 0.5) for i in range(n))


def gguf_seeds():
    t = "gguf_fuzz"
    stories = TESTDATA / "models/stories260K/stories260K.gguf"
    tiny = TESTDATA / "models/llama-2-tiny-random/llama-2-tiny-random.gguf"
    # Truncated real files: the parser must reject them cleanly.
    for path, n in ((stories, 4096), (tiny, 2048)):
        if path.exists():
            write(t, f"truncated-{path.stem}-{n}.gguf", path.read_bytes()[:n])
    # A runnable miniature of stories260K: its real 512-token SentencePiece vocabulary and
    # metadata, with tiny weights (n_embd 8, 1 layer) so the whole file is ~25 KB.
    if stories.exists():
        _, kvs = read_gguf_metadata(stories)
        over = {"llama.embedding_length": 8, "llama.feed_forward_length": 16,
                "llama.block_count": 1, "llama.attention.head_count": 2,
                "llama.attention.head_count_kv": 1, "llama.rope.dimension_count": 4}
        kvs = [(k, ty, over.get(k, v)) for k, ty, v in kvs]
        vocab, d, ff = 512, 8, 16
        tensors = [("token_embd.weight", 0, [d, vocab], f32(d * vocab)),
                   ("output_norm.weight", 0, [d], f32(d, 2)),
                   ("output.weight", 0, [d, vocab], f32(d * vocab, 3)),
                   ("blk.0.attn_norm.weight", 0, [d], f32(d, 4)),
                   ("blk.0.attn_q.weight", 0, [d, d], f32(d * d, 5)),
                   ("blk.0.attn_k.weight", 0, [d, d // 2], f32(d * d // 2, 6)),
                   ("blk.0.attn_v.weight", 0, [d, d // 2], f32(d * d // 2, 7)),
                   ("blk.0.attn_output.weight", 0, [d, d], f32(d * d, 8)),
                   ("blk.0.ffn_norm.weight", 0, [d], f32(d, 9)),
                   ("blk.0.ffn_gate.weight", 0, [d, ff], f32(d * ff, 10)),
                   ("blk.0.ffn_up.weight", 0, [d, ff], f32(d * ff, 11)),
                   ("blk.0.ffn_down.weight", 0, [ff, d], f32(d * ff, 12))]
        write(t, "stories260K-mini.gguf", make_gguf(kvs, tensors))
    # A byte-level BPE vocabulary only (GPT-2's first 300 tokens and the merges among them).
    vocab_file = TESTDATA / "tokenizers/gpt2/tokenizer.json"
    if vocab_file.exists():
        tj = json.loads(vocab_file.read_text())
        vocab = sorted(((i, s) for s, i in tj["model"]["vocab"].items() if i < 300))
        names = {s for _, s in vocab}
        merges = []
        for m in tj["model"]["merges"]:
            a, b = m.split(" ") if isinstance(m, str) else m
            if a in names and b in names and a + b in names:
                merges.append(f"{a} {b}")
        kvs = [("general.architecture", STR, "gpt2"),
               ("tokenizer.ggml.model", STR, "gpt2"),
               ("tokenizer.ggml.pre", STR, "gpt-2"),
               ("tokenizer.ggml.tokens", ARR, (STR, [s for _, s in vocab])),
               ("tokenizer.ggml.token_type", ARR, (I32, [1] * len(vocab))),
               ("tokenizer.ggml.merges", ARR, (STR, merges)),
               ("tokenizer.ggml.bos_token_id", U32, 0),
               ("tokenizer.ggml.eos_token_id", U32, 0)]
        write(t, "gpt2-vocab-mini.gguf", make_gguf(kvs, []))
    # Every metadata type, v2 header, custom alignment, quantized and unsupported tensors.
    every = [("general.architecture", STR, "llama"), ("general.alignment", U32, 64),
             ("u8", U8, 255), ("i8", I8, -128), ("u16", U16, 65535), ("i16", I16, -1),
             ("u32", U32, 4294967295), ("i32", I32, -2147483648), ("f32", F32, 1.5),
             ("bool", BOOL, True), ("u64", U64, 2**64 - 1), ("i64", I64, -(2**63)),
             ("f64", F64, -0.0), ("str", STR, "h\u00e9llo"),
             ("arr.i32", ARR, (I32, [1, -2, 3])), ("arr.u64", ARR, (U64, [2**63])),
             ("arr.f32", ARR, (F32, [0.5, -1.0])), ("arr.bool", ARR, (BOOL, [True, False])),
             ("arr.str", ARR, (STR, ["a", "", "\u2581b"])), ("arr.empty", ARR, (U8, []))]
    tensors = [("f16", 1, [4, 2], b"\x00\x3c" * 8), ("bf16", 30, [3], b"\x80\x3f" * 3),
               ("q8_0", 8, [32, 1], b"\x00\x3c" + bytes(range(32))),
               ("q4_k", 12, [256], bytes(144)), ("i32", 26, [2, 1, 1, 1], bytes(8)),
               ("empty", 0, [0], b"")]
    write(t, "every-type-v3.gguf", make_gguf(every, tensors, alignment=64))
    write(t, "every-type-v2.gguf", make_gguf(every[2:], tensors[:2], version=2))
    write(t, "empty-v3.gguf", make_gguf([], []))
    write(t, "header-only.gguf", b"GGUF" + struct.pack("<IQQ", 3, 0, 0))
    write(t, "huge-counts.gguf", b"GGUF" + struct.pack("<IQQ", 3, 2**62, 2**62))
    write(t, "deep-array.gguf", make_gguf([("a", ARR, (ARR, [(ARR, [(I32, [1])])]))], []))


# ---------------------------------------------------------------------------- safetensors
def safetensors(header, data=b"", pad_to=8):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % pad_to)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    t = "safetensors_fuzz"
    for p in sorted((TESTDATA / "models/safetensors-tensors").glob("*.safetensors")):
        write(t, p.name, p.read_bytes())
    # The header (and a little data) of a real checkpoint: many tensors, real names.
    ref = ROOT / "tests/reference/hf/llama_sharded_f16/model-00003-of-00003.safetensors"
    if ref.exists():
        b = ref.read_bytes()
        (n,) = struct.unpack_from("<Q", b)
        write(t, "llama-sharded-header-truncated.safetensors", b[:8 + n + 64])
    write(t, "metadata-and-dtypes.safetensors", safetensors(
        {"__metadata__": {"format": "pt", "note": "\u00e9"},
         "a.f16": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]},
         "b.bf16": {"dtype": "BF16", "shape": [3], "data_offsets": [8, 14]},
         "c.i8": {"dtype": "I8", "shape": [2], "data_offsets": [14, 16]},
         "d.scalar": {"dtype": "F32", "shape": [], "data_offsets": [16, 20]},
         "e.empty": {"dtype": "F32", "shape": [0, 4], "data_offsets": [20, 20]},
         "f.f8": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [20, 24]},
         "g.5d": {"dtype": "U8", "shape": [1, 1, 1, 1, 2], "data_offsets": [24, 26]}},
        bytes(range(26))))
    write(t, "overlap.safetensors", safetensors(
        {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)))
    write(t, "huge-shape.safetensors", safetensors(
        {"a": {"dtype": "F32", "shape": [2**32, 2**32], "data_offsets": [0, 0]}}))
    write(t, "negative-offsets.safetensors", safetensors(
        {"a": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}}, bytes(4)))
    write(t, "header-too-long.safetensors", struct.pack("<Q", 2**63) + b"{}")
    write(t, "empty-header.safetensors", safetensors({}))


# ---------------------------------------------------------------------------- config.json
def config_seeds():
    t = "model_config_fuzz"
    for p in sorted((ROOT / "tests/reference/hf").glob("*/config.json")):
        write(t, f"{p.parent.name}.json", p.read_bytes())
    for name in ("mistral-7b-instruct-v0.3", "tinyllama-1.1b-chat-v1.0", "qwen2.5-0.5b-instruct",
                 "smollm2-135m-instruct"):
        p = TESTDATA / "tokenizers" / name / "config.json"
        if p.exists():
            write(t, f"{name}.json", p.read_bytes())
    base = {"architectures": ["LlamaForCausalLM"], "vocab_size": 32000, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0, "bos_token_id": 1, "eos_token_id": [2, 3]}
    write(t, "llama3-scaling.json", json.dumps(dict(base, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192})))
    write(t, "linear-scaling.json", json.dumps(dict(base, rope_scaling={
        "type": "linear", "factor": 2.0}, head_dim=16, tie_word_embeddings=True)))
    write(t, "huge-values.json", json.dumps(dict(base, hidden_size=2**31 - 1,
                                                 num_hidden_layers=1e300, vocab_size=-1)))
    write(t, "wrong-types.json", json.dumps(dict(base, hidden_size="64", rope_scaling=[1],
                                                 eos_token_id={"a": 1})))
    write(t, "not-an-object.json", "[1, 2, 3]")


# ---------------------------------------------------------------------------- tokenizer.json
def trim_tokenizer(tj, keep):
    """The tokenizer with only ids < keep and the merges among them (still consistent)."""
    tj = json.loads(json.dumps(tj))
    vocab = {s: i for s, i in tj["model"]["vocab"].items() if i < keep}
    merges = []
    for m in tj["model"].get("merges", []):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    tj["model"]["vocab"] = vocab
    tj["model"]["merges"] = merges
    tj["added_tokens"] = [a for a in tj.get("added_tokens", []) if a["id"] < keep + 8]
    return tj


def tokenizer_json_seeds():
    t = "tokenizer_json_fuzz"
    synthetic = ROOT / "tests/reference/tokenizer/goldens/synthetic.json"
    if synthetic.exists():
        for entry in json.loads(synthetic.read_text())["tokenizers"]:
            write(t, f"synthetic-{entry['name']}.json", json.dumps(entry["tokenizer"]))
    for name, keep in (("gpt2", 320), ("llama-2", 330), ("smollm2-135m-instruct", 300),
                       ("phi-3-mini-4k-instruct", 330)):
        p = TESTDATA / "tokenizers" / name / "tokenizer.json"
        if p.exists():
            tj = trim_tokenizer(json.loads(p.read_text()), keep)
            write(t, f"{name}-trimmed.json", json.dumps(tj, ensure_ascii=False))
    write(t, "minimal.json", json.dumps({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1,
                                                                          "ab": 2},
                                                   "merges": [["a", "b"]]}}))
    write(t, "bad-ids.json", json.dumps({
        "added_tokens": [{"id": -1, "content": "<x>", "special": True}],
        "model": {"type": "BPE", "vocab": {"a": 2147483647, "b": -5}, "merges": ["a b"]}}))
    write(t, "wordpiece.json", json.dumps({"model": {"type": "WordPiece", "vocab": {"a": 0}}}))


# ---------------------------------------------------------------------------- encode/decode
def encode_decode_seeds():
    # Layout (encode_decode_fuzz.cc, SplitInput): tokenizer byte, flags byte, text length
    # (2 bytes LE), text, then 3 bytes per id.
    t = "encode_decode_fuzz"
    texts = ["Hello world", " leading space and  double", "\u4f60\u597d\u4e16\u754c",
             "\U0001f44d\U0001f3fd family \U0001f468\u200d\U0001f469\u200d\U0001f467",
             "<s>[INST] hi [/INST]</s><|endoftext|><|begin_of_text|>",
             "def f(x):\n\treturn x ** 2  # 12345\r\n", "\xe9\u0301 na\u00efve \u2581x",
             "bad \udcff utf-8"]
    for sel in range(5):
        for k, text in enumerate(texts):
            raw = text.encode("utf-8", "surrogateescape")
            ids = bytes((sel * 37 + k * 11 + i * 13) % 256 for i in range(24))
            write(t, f"tok{sel}-{k}", bytes([sel, k]) + struct.pack("<H", len(raw)) + raw + ids)


# ---------------------------------------------------------------------------- chat templates
def chat_template_seeds():
    t = "chat_template_fuzz"
    for p in sorted((TESTDATA / "chat_templates").glob("*.jinja")):
        write(t, p.name, p.read_bytes())
    hostile = {
        "nested-loops.jinja": "{% for a in range(1000) %}{% for b in range(1000) %}{{ a }}"
                              "{% endfor %}{% endfor %}",
        "doubling.jinja": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}"
                          "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
        "recursion.jinja": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "deep-nesting.jinja": "{{ " + "[" * 300 + "]" * 300 + " }}",
        "filters.jinja": "{{ messages|map(attribute='role')|join(',')|upper }}"
                         "{{ tools|tojson(indent=2) }}{{ '%s-%d'|format('a', 3) }}"
                         "{{ messages[0]['content'][::-1]|trim|replace('a','b') }}"
                         "{% for m in messages|selectattr('role','equalto','user') %}"
                         "{{ loop.index }}{{ m.content is string }}{% endfor %}",
        "errors.jinja": "{{ raise_exception('no') if messages|length > 100 }}{{ x.y.z }}"
                        "{{ 1 + 'a' }}",
        "strftime.jinja": "{{ strftime_now('%d %b %Y') }}{{ bos_token }}{{ eos_token }}",
    }
    for name, text in hostile.items():
        write(t, name, text)


# ---------------------------------------------------------------------------- HTTP requests
def http_request_seeds():
    # First byte: 0 = POST /v1/completions, 1 = POST /v1/chat/completions; then the body.
    t = "http_request_fuzz"
    completions = {
        "simple": {"model": "m", "prompt": "Once upon a time", "max_tokens": 16},
        "ids": {"prompt": [[1, 15043, 3186]], "max_tokens": 4, "temperature": 0.0},
        "sampling": {"prompt": "x", "n": 2, "best_of": 2, "temperature": 0.7, "top_p": 0.9,
                     "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1,
                     "presence_penalty": 0.5, "frequency_penalty": -0.5, "seed": 42,
                     "stop": ["\n\n", "END"], "stop_token_ids": [2], "logprobs": 3,
                     "ignore_eos": True, "skip_special_tokens": False,
                     "add_special_tokens": True, "priority": 1, "user": "u",
                     "stream": True, "stream_options": {"include_usage": True}},
        "absurd": {"prompt": "x", "max_tokens": 1e300, "temperature": -1, "n": 2**40,
                   "logprobs": -3, "stop": [""] * 3, "top_p": "high"},
        "unknown-field": {"prompt": "x", "frobnicate": True},
    }
    chats = {
        "simple": {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "Hi \u00e9\u4f60"}]},
        "parts": {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                                                            {"type": "text", "text": "b"}]}],
                  "logprobs": True, "top_logprobs": 2, "max_completion_tokens": 8,
                  "response_format": {"type": "text"}, "tool_choice": "none"},
        "bad-messages": {"messages": [{"role": 3}, "x", {"content": None}]},
        "tools": {"messages": [{"role": "user", "content": "x"}],
                  "tools": [{"type": "function", "function": {"name": "f"}}]},
    }
    for name, body in completions.items():
        write(t, f"completion-{name}.json", b"\0" + json.dumps(body).encode())
    for name, body in chats.items():
        write(t, f"chat-{name}.json", b"\1" + json.dumps(body).encode())
    write(t, "chat-invalid-utf8.json", b'\1{"messages": [{"role": "user", "content": "\xff\xfe"}]}')
    write(t, "completion-not-json", b"\0{\"prompt\": ")


def main():
    # Reproducers of fixed bugs (regress-*) are kept; everything else is rewritten.
    for p in OUT.rglob("*"):
        if p.is_file() and not p.name.startswith("regress-"):
            p.unlink()
    if not TESTDATA.exists():
        print(f"note: {TESTDATA} not found; seeds from the test data are left out",
              file=sys.stderr)
    gguf_seeds()
    safetensors_seeds()
    config_seeds()
    tokenizer_json_seeds()
    encode_decode_seeds()
    chat_template_seeds()
    http_request_seeds()
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {sum(1 for p in OUT.rglob('*') if p.is_file())} seeds, {total} bytes")


if __name__ == "__main__":
    main()
