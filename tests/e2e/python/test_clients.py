#!/usr/bin/env python3
"""End-to-end tests of `tokenmill serve` with the official Python clients from PyPI:
grpcio (stubs generated from proto/tokenmill/v1/service.proto with grpc_tools) and openai.
Also runs examples/python/client.py.

Run by CTest (e2e_python_test) with TOKENMILL_BINARY and TOKENMILL_SOURCE_DIR set. Exits 77
(CTest: skipped) with a message when grpcio, grpcio-tools or openai are not installed:
    pip install grpcio grpcio-tools openai
"""
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

SKIP = 77
try:
    import grpc
    import openai
    from grpc_tools import protoc  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"SKIPPED: Python client packages missing ({e}); "
          "install them with: pip install grpcio grpcio-tools openai")
    sys.exit(SKIP)

SOURCE = os.environ.get("TOKENMILL_SOURCE_DIR",
                        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
BINARY = os.environ.get("TOKENMILL_BINARY", "")
sys.path.insert(0, os.path.join(SOURCE, "examples", "python"))
import client as example  # noqa: E402  (examples/python/client.py)

pb, rpc = example.load_stubs(os.path.join(SOURCE, "proto"))

KEY = "tm-python-test-key-31f9"
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


class Server:
    """`tokenmill serve` on free loopback ports, with auth on (one key, tenant "py")."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tm-py-")
        template = os.path.join(self.dir, "chat.jinja")
        with open(template, "w") as f:
            f.write(CHAT_TEMPLATE)
        config = os.path.join(self.dir, "server.yaml")
        with open(config, "w") as f:
            f.write("auth:\n  enabled: true\n  public_metrics: true\n  keys:\n"
                    f"    - sha256: {hashlib.sha256(KEY.encode()).hexdigest()}\n"
                    "      tenant: py\n      admin: true\n")
        self.log = open(os.path.join(self.dir, "server.log"), "w+")
        self.proc = subprocess.Popen(
            [BINARY, "serve", "--model", "demo", "--config", config, "--chat-template", template,
             "--grpc-port", "0", "--http-port", "0"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            with open(self.log.name) as f:
                m = re.search(r"listening grpc=(\S+) http=(\S+)", f.read())
            if m:
                self.grpc, self.http = m.group(1), m.group(2)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("tokenmill serve did not start:\n" + open(self.log.name).read())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)
        return code


server = None
AUTH = [("authorization", f"Bearer {KEY}")]


def setUpModule():
    global server
    if not BINARY:
        raise unittest.SkipTest("TOKENMILL_BINARY is not set")
    server = Server()


def tearDownModule():
    if server is not None:
        assert server.stop() == 0


def stub():
    return rpc.InferenceStub(grpc.insecure_channel(server.grpc))


def greedy(text, max_tokens):
    return pb.GenerateRequest(text=text, max_tokens=max_tokens, ignore_eos=True,
                              sampling=pb.SamplingParams(temperature=0))


def wait_idle(s, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = s.GetStats(pb.GetStatsRequest(), metadata=AUTH)
        if st.num_pending_requests == 0 and st.kv_cache.num_used_blocks == 0:
            return st
        time.sleep(0.02)
    raise AssertionError(f"requests still pending: {st}")


class GrpcClientTest(unittest.TestCase):
    def test_streaming_generate_and_final_figures(self):
        msgs = list(stub().Generate(greedy("Hello", 10), metadata=AUTH, timeout=30))
        final = msgs[-1].final
        self.assertTrue(msgs[-1].HasField("final"))
        self.assertEqual(sum(len(m.token_ids) for m in msgs), 10)
        self.assertEqual(final.usage.prompt_tokens, 6)
        self.assertEqual(final.usage.generated_tokens, 10)
        self.assertEqual(list(final.finish_reasons), [pb.FINISH_REASON_LENGTH])
        self.assertGreater(final.timings.e2e_s, 0)
        self.assertEqual(final.cost.currency, "USD")
        if final.energy.energy_source == "none":
            self.assertFalse(final.energy.HasField("joules"))

    def test_unary_calls(self):
        s = stub()
        tok = s.Tokenize(pb.TokenizeRequest(text="hi"), metadata=AUTH)
        self.assertEqual(list(tok.token_ids), [256, ord("h"), ord("i")])
        text = s.Detokenize(pb.DetokenizeRequest(token_ids=[ord("o"), ord("k")]), metadata=AUTH)
        self.assertEqual(text.text, "ok")
        models = s.ListModels(pb.ListModelsRequest(), metadata=AUTH)
        self.assertEqual(models.models[0].id, "demo")

    def test_error_codes(self):
        s = stub()
        cases = [
            (pb.GenerateRequest(text="x", max_tokens=0), grpc.StatusCode.INVALID_ARGUMENT,
             "max_tokens"),
            (pb.GenerateRequest(text="x", model="nope"), grpc.StatusCode.NOT_FOUND, "model"),
            (pb.GenerateRequest(token_ids=pb.TokenIds(ids=[65] * 3000)),
             grpc.StatusCode.RESOURCE_EXHAUSTED, "prompt"),
        ]
        for request, code, field in cases:
            with self.assertRaises(grpc.RpcError) as e:
                list(s.Generate(request, metadata=AUTH, timeout=30))
            self.assertEqual(e.exception.code(), code)
            self.assertTrue(e.exception.details().startswith(field), e.exception.details())
        with self.assertRaises(grpc.RpcError) as e:
            list(s.Generate(greedy("x", 2), timeout=30))
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        with self.assertRaises(grpc.RpcError) as e:
            list(s.Generate(greedy("x", 2), metadata=[("authorization", "Bearer wrong")]))
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)

    def test_cancel_mid_stream_frees_blocks(self):
        s = stub()
        call = s.Generate(greedy("long", 1500), metadata=AUTH, timeout=60)
        next(call)
        next(call)
        call.cancel()
        with self.assertRaises(grpc.RpcError) as e:
            list(call)
        self.assertEqual(e.exception.code(), grpc.StatusCode.CANCELLED)
        wait_idle(s)

    def test_deadline(self):
        s = stub()
        with self.assertRaises(grpc.RpcError) as e:
            list(s.Generate(greedy("long", 1500), metadata=AUTH, timeout=0.3))
        self.assertEqual(e.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        wait_idle(s)

    def test_concurrent_streams(self):
        results = [None] * 16

        def run(i):
            results[i] = list(stub().Generate(greedy(f"s{i}", 8), metadata=AUTH, timeout=60))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for msgs in results:
            self.assertEqual(sum(len(m.token_ids) for m in msgs), 8)


class OpenAiClientTest(unittest.TestCase):
    def setUp(self):
        self.client = openai.OpenAI(base_url=f"http://{server.http}/v1", api_key=KEY,
                                    max_retries=0)

    def test_models(self):
        self.assertEqual([m.id for m in self.client.models.list().data], ["demo"])

    def test_completion_and_stream_agree(self):
        c = self.client.completions.create(model="demo", prompt="Hello", max_tokens=8,
                                           temperature=0, extra_body={"ignore_eos": True})
        self.assertEqual(c.choices[0].finish_reason, "length")
        self.assertEqual(c.usage.completion_tokens, 8)
        figures = c.usage.model_extra["tokenmill"]
        for key in ("queue_s", "ttft_s", "tpot_s", "e2e_s", "joules", "tokens_per_joule", "cost",
                    "currency", "energy_source"):
            self.assertIn(key, figures)
        stream = self.client.completions.create(model="demo", prompt="Hello", max_tokens=8,
                                                temperature=0, stream=True,
                                                extra_body={"ignore_eos": True})
        self.assertEqual("".join(chunk.choices[0].text for chunk in stream), c.choices[0].text)

    def test_chat_stream_with_usage(self):
        stream = self.client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}], max_tokens=5,
            temperature=0, stream=True, stream_options={"include_usage": True},
            extra_body={"ignore_eos": True})
        chunks = list(stream)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        self.assertEqual(chunks[-1].usage.completion_tokens, 5)
        self.assertIn("tokenmill", chunks[-1].usage.model_extra)
        non_stream = self.client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}], max_tokens=5,
            temperature=0, extra_body={"ignore_eos": True})
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        self.assertEqual(streamed, non_stream.choices[0].message.content)

    def test_errors_map_to_openai_exceptions(self):
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.completions.create(model="demo", prompt="x", max_tokens=0)
        self.assertEqual(e.exception.param, "max_tokens")
        with self.assertRaises(openai.NotFoundError):
            self.client.completions.create(model="nope", prompt="x")
        with self.assertRaises(openai.BadRequestError) as e:
            self.client.completions.create(model="demo", prompt="a" * 3000)
        self.assertEqual(e.exception.code, "context_length_exceeded")
        bad = openai.OpenAI(base_url=f"http://{server.http}/v1", api_key="wrong", max_retries=0)
        with self.assertRaises(openai.AuthenticationError):
            bad.models.list()


class ExampleClientTest(unittest.TestCase):
    def run_example(self, *args):
        env = dict(os.environ, TOKENMILL_API_KEY=KEY)
        out = subprocess.run([sys.executable, os.path.join(SOURCE, "examples", "python",
                                                           "client.py"), *args],
                             capture_output=True, text=True, timeout=120, env=env)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def test_grpc_example(self):
        out = self.run_example("grpc", "--target", server.grpc, "--max-tokens", "6")
        self.assertIn("generated 6", out)
        self.assertIn("cost", out)

    def test_openai_examples(self):
        out = self.run_example("openai", "--base-url", f"http://{server.http}/v1",
                               "--max-tokens", "4")
        self.assertIn("generated 4", out)
        out = self.run_example("openai", "--base-url", f"http://{server.http}/v1", "--chat",
                               "--max-tokens", "3")
        self.assertIn("generated 3", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
