#!/usr/bin/env python3
"""Reference token ids for tokenmill's tokenizers, from the reference implementations.

For each tokenizer family in ../shared/testdata/tokenizers it encodes a few hundred
seeded, generated strings (multilingual text, code, whitespace runs, emoji, long numbers,
special-token look-alikes, unusual Unicode) and writes tests/reference/tokenizer/goldens/
<family>.json, which tests/tokenizer/golden_test.cc matches exactly. CI never runs this.

References (pip install tokenizers transformers tiktoken):
  * tokenizer.json families: the Rust `tokenizers` library on the file itself, with
    add_special_tokens=True (the file's post-processor; its tokenizer_config.json agrees).
  * qwen2.5 (vocab.json + merges.txt): transformers.AutoTokenizer on the folder.
  * llama-3 (tiktoken tokenizer.model): tiktoken with the Llama 3 pattern and the
    llama-models special-token table, <|begin_of_text|> prepended.
Per case: text, ids (default add_special, special tokens parsed), ids_no_special (for
strings that contain a special token: special tokens encoded as text, no BOS/EOS), and
decoded (only where decode(ids without the add_special prefix, skip_special_tokens=False)
differs from text: decode(encode(x)) == x is checked for every other case).

  python3 tests/reference/tokenizer/make_tokenizer_goldens.py [--testdata DIR] [--n 400]
"""
import argparse
import base64
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?"
                  r"[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

WORDS = [
    "Hello", "world", "the", "quick", "brown", "fox", "tokenizer", "don't", "I'm", "we'LL",
    "they've", "it's", "SHE'D", "café", "naïve", "résumé", "Straße", "Übermäßig", "año",
    "Привет", "мир", "Ελληνικά", "日本語", "東京都", "こんにちは", "カタカナ", "ｶﾞ", "한국어",
    "안녕하세요", "中文", "你好世界", "繁體字", "العربية", "مرحبا", "עברית", "हिन्दी", "नमस्ते",
    "ภาษาไทย", "tiếng Việt", "Ṁ̧̂", "e\u0301", "A\u030a", "ﬁ", "①②", "Ⅻ", "½", "²³",
    "\U0001F600", "\U0001F44D\U0001F3FD", "\U0001F468\u200D\U0001F469\u200D\U0001F467",
    "\U0001F1FA\U0001F1F8", "❤️", "\U0001F9D1\U0001F3FB\u200D\U0001F4BB", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𐍈",
    "def", "return", "self.x", "std::vector<int>", "#include", "=>", "!=", "<=", "&&", "||",
    "{\"key\": [1, 2.5e-3, null]}", "0x1F", "__init__", "camelCase", "snake_case", "URL:",
    "https://example.com/a?b=c&d=e", "user@mail.org", "$100.00", "€5", "¥", "£", "§", "©",
]
SPECIAL_LOOKALIKES = [
    "<s>", "</s>", "<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|eot_id|>",
    "<|begin_of_text|>", "<|start_header_id|>", "<|end|>", "<|user|>", "<|assistant|>",
    "[INST]", "[/INST]", "<0x41>", "<|endof", "< s >", "<|im_start", "<<s>>", "<s>>",
    "<|reserved_special_token_5|>", "<|fim_prefix|>", "<pad>",
]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\t\t ", "\u00a0", "\u3000",
          "\u2028", "\u0085", "\u200b", "\u2009", "  \n\n  ", "\n\t\n", " " * 7, "\n" * 4]
CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
    "if __name__ == '__main__':\n    main()",
    "SELECT * FROM t WHERE id = 42;",
    "    \n        indented\n",
    "fn main() { println!(\"hi\"); }",
    "<div class=\"x\">&amp;</div>",
    "x=[1,2,3];y={'a':1}",
]


def random_number(rng):
    n = rng.choice([1, 2, 3, 4, 5, 7, 10, 16, 25, 40])
    s = "".join(rng.choice("0123456789") for _ in range(n))
    if rng.random() < 0.3:
        s += "." + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 6)))
    if rng.random() < 0.2:
        s = "-" + s
    return s


def random_codepoints(rng):
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
              (0x900, 0x97F), (0xE00, 0xE7F), (0x3040, 0x30FF), (0x4E00, 0x9FFF),
              (0xAC00, 0xD7A3), (0x1F300, 0x1F6FF), (0x2000, 0x206F), (0xFF00, 0xFFEF),
              (0x10000, 0x1007F), (0x1D400, 0x1D7FF)]
    lo, hi = rng.choice(blocks)
    return "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 8)))


def make_strings(n, seed):
    rng = random.Random(seed)
    out = ["", " ", "  ", "\n", "Hello world", " Hello world", "Hello  world ", "\t\tx",
           "1234567890123", "   leading", "trailing   ", "<s>", "</s>"]
    kinds = ["word", "word", "word", "space", "number", "special", "code", "cps", "punct"]
    while len(out) < n:
        parts = []
        for _ in range(rng.randint(1, 8)):
            k = rng.choice(kinds)
            if k == "word":
                parts.append(rng.choice(WORDS))
            elif k == "space":
                parts.append(rng.choice(SPACES))
            elif k == "number":
                parts.append(random_number(rng))
            elif k == "special":
                parts.append(rng.choice(SPECIAL_LOOKALIKES))
            elif k == "code":
                parts.append(rng.choice(CODE))
            elif k == "cps":
                parts.append(random_codepoints(rng))
            else:
                parts.append(rng.choice([".", ",", "!", "?", "...", "—", "'", "\"", "(", ")",
                                         "'s", "'t", "-", ":", ";", "“", "”", "«", "»"]))
            if rng.random() < 0.6:
                parts.append(" ")
        s = "".join(parts)
        if rng.random() < 0.2:
            s = " " + s
        out.append(s)
    return out


class HfFile:
    """The Rust tokenizers library on a tokenizer.json."""

    def __init__(self, path):
        from tokenizers import Tokenizer
        self.tok = Tokenizer.from_file(path)
        self.plain = Tokenizer.from_file(path)
        self.plain.encode_special_tokens = True
        self.specials = [t.content for t in self.tok.get_added_tokens_decoder().values()
                         if t.special]

    def encode(self, text):
        return self.tok.encode(text, add_special_tokens=True).ids

    def encode_no_special(self, text):
        return self.plain.encode(text, add_special_tokens=False).ids

    def decode(self, ids):
        return self.tok.decode(ids, skip_special_tokens=False)


class Transformers:
    def __init__(self, path):
        from transformers import AutoTokenizer
        self.tok = AutoTokenizer.from_pretrained(path)
        self.plain = AutoTokenizer.from_pretrained(path, split_special_tokens=True)
        self.specials = list(self.tok.all_special_tokens) + [
            t.content for t in self.tok.added_tokens_decoder.values() if t.special]

    def encode(self, text):
        return self.tok(text)["input_ids"]

    def encode_no_special(self, text):
        return self.plain(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids):
        return self.tok.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


class Llama3Tiktoken:
    def __init__(self, path):
        import tiktoken
        ranks = {}
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    tok, rank = line.split()
                    ranks[base64.b64decode(tok)] = int(rank)
        names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                 "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|step_id|>",
                 "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>",
                 "<|python_tag|>", "<|image|>"]
        names += [f"<|reserved_special_token_{i}|>" for i in range(2, 2 + 256 - len(names))]
        base = len(ranks)
        self.special_ids = {n: base + i for i, n in enumerate(names)}
        self.specials = names
        self.enc = tiktoken.Encoding("llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                                     special_tokens=self.special_ids)

    def encode(self, text):
        return [self.special_ids["<|begin_of_text|>"]] + self.enc.encode(
            text, allowed_special="all", disallowed_special=())

    def encode_no_special(self, text):
        return self.enc.encode(text, allowed_special=set(), disallowed_special=())

    def decode(self, ids):
        return self.enc.decode(ids, errors="replace")


FAMILIES = {
    # name: (reference class, path under testdata/tokenizers, what the C++ test loads)
    "gpt2": (HfFile, "gpt2/tokenizer.json", "tokenizers/gpt2/tokenizer.json"),
    "llama-2": (HfFile, "llama-2/tokenizer.json", "tokenizers/llama-2"),
    "mistral-7b-instruct-v0.3": (HfFile, "mistral-7b-instruct-v0.3/tokenizer.json",
                                 "tokenizers/mistral-7b-instruct-v0.3"),
    "phi-3-mini-4k-instruct": (HfFile, "phi-3-mini-4k-instruct/tokenizer.json",
                               "tokenizers/phi-3-mini-4k-instruct"),
    "smollm2-135m-instruct": (HfFile, "smollm2-135m-instruct/tokenizer.json",
                              "tokenizers/smollm2-135m-instruct"),
    "qwen2.5-0.5b-instruct": (Transformers, "qwen2.5-0.5b-instruct",
                              "tokenizers/qwen2.5-0.5b-instruct"),
    "llama-3": (Llama3Tiktoken, "llama-3/tokenizer.model", "tokenizers/llama-3"),
}


SYNTHETIC_TEXTS = [
    "The quick brown fox", "  Hello,   world!!  ", "naïve ＡＢＣ ﬁne", "cat concat cat.", "a <tool> b",
    "x<tool>y", "un-believable!!! ...", "3.14159 and 1,000,000", "ÅngströmΩ zzz qqq", "",
    "\t tabs\tand\nnewlines\n", "emoji \U0001F600 here", "kebab-case_under", "日本語 text",
]


def make_synthetic():
    """Tiny BPE tokenizers trained here to exercise pipeline parts the real files don't:
    Metaspace split/prepend schemes, NFKC/NFD/Lowercase/Strip/Replace-regex normalizers,
    Split/Digits/Punctuation/WhitespaceSplit, unk fusing, subword affixes, and added tokens
    with lstrip/rstrip/single_word."""
    from tokenizers import (Tokenizer, models, pre_tokenizers, normalizers, decoders,
                            trainers, AddedToken, Regex)
    corpus = ["The quick brown fox jumps over the lazy dog 12345 times.", "Hello, world! Hello again; world...",
              "naïve café résumé ＡＢＣ ﬁne 2024-11-27", "tokenizers split words into pieces: un-believable!",
              "Numbers 3.14159 and 1,000,000 and 42", "under_score camelCase kebab-case"] * 20
    def train(pre, norm, dec, **model_kwargs):
        tok = Tokenizer(models.BPE(unk_token="[UNK]", **model_kwargs))
        tok.normalizer = norm; tok.pre_tokenizer = pre; tok.decoder = dec
        kw = {k: v for k, v in model_kwargs.items() if k in ("continuing_subword_prefix", "end_of_word_suffix")}
        tr = trainers.BpeTrainer(vocab_size=180, special_tokens=["[UNK]", "<bos>"], show_progress=False, **kw)
        tok.train_from_iterator(corpus, tr)
        return tok
    a = train(pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
              normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()]), decoders.Metaspace(prepend_scheme="always"), fuse_unk=True)
    a.add_tokens([AddedToken("<tool>", lstrip=True, rstrip=True), AddedToken("cat", single_word=True)])
    b = train(pre_tokenizers.Sequence([pre_tokenizers.Split(" ", "merged_with_previous"), pre_tokenizers.Digits(individual_digits=False), pre_tokenizers.Punctuation("contiguous")]),
              normalizers.Sequence([normalizers.Strip(left=True, right=True), normalizers.Replace(Regex("[0-9]+"), "#")]), decoders.Fuse())
    c = train(pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(prepend_scheme="first", split=False)]), normalizers.NFD(), decoders.Metaspace(prepend_scheme="first"),
              continuing_subword_prefix="##", end_of_word_suffix="</w>")

    out = []
    for name, tok in (("metaspace_nfkc_lower", a), ("split_digits_punct", b), ("affixes_nfd", c)):
        cases = []
        for text in SYNTHETIC_TEXTS:
            ids = tok.encode(text).ids
            cases.append({"text": text, "ids": ids,
                          "decoded": tok.decode(ids, skip_special_tokens=False)})
        out.append({"name": name, "tokenizer": json.loads(tok.to_str()), "cases": cases})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--testdata", default=os.path.join(ROOT, "..", "shared", "testdata"))
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--out", default=os.path.join(HERE, "goldens"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    strings = make_strings(args.n, args.seed)
    import tokenizers, tiktoken, transformers
    versions = {"tokenizers": tokenizers.__version__, "tiktoken": tiktoken.__version__,
                "transformers": transformers.__version__}
    synthetic = make_synthetic()
    with open(os.path.join(args.out, "synthetic.json"), "w", encoding="utf-8") as f:
        json.dump({"versions": versions, "tokenizers": synthetic}, f, ensure_ascii=False,
                  separators=(",", ":"))
    for name, (cls, rel, load) in FAMILIES.items():
        ref = cls(os.path.join(args.testdata, "tokenizers", rel))
        cases = []
        lossless = 0
        prefix = ref.encode("")  # what add_special puts in front (BOS), decoded separately
        for text in strings:
            ids = ref.encode(text)
            assert ids[:len(prefix)] == prefix, (name, text)
            case = {"text": text, "ids": ids}
            if any(s in text for s in ref.specials):
                case["ids_no_special"] = ref.encode_no_special(text)
            decoded = ref.decode(ids[len(prefix):])
            if decoded != text:
                case["decoded"] = decoded
            else:
                lossless += 1
            cases.append(case)
        golden = {"family": name, "load": load, "reference": cls.__name__, "versions": versions,
                  "prefix": prefix,
                  "seed": args.seed, "cases": cases}
        path = os.path.join(args.out, f"{name}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(golden, f, ensure_ascii=False, separators=(",", ":"))
        print(f"{name}: {len(cases)} cases, {lossless} decode to the input, "
              f"{os.path.getsize(path)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
