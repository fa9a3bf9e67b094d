#!/usr/bin/env python3
"""tokenmill from Python: the gRPC API (grpcio) and the OpenAI-compatible HTTP API (openai).

    pip install grpcio grpcio-tools openai
    tokenmill serve --model demo &
    python3 examples/python/client.py grpc --target 127.0.0.1:50051 --prompt "Once upon a time"
    python3 examples/python/client.py openai --base-url http://127.0.0.1:8080/v1 --chat

The gRPC stubs are generated from proto/tokenmill/v1/service.proto with grpc_tools the first
time (into a temporary directory), exactly as you would in your own project:
    python3 -m grpc_tools.protoc -I proto --python_out=. --grpc_python_out=. \
        proto/tokenmill/v1/service.proto
"""
import argparse
import os
import sys
import tempfile

PROTO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto")


def load_stubs(proto_root=PROTO_ROOT):
    """Generates and imports tokenmill.v1 service_pb2 / service_pb2_grpc."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="tokenmill-stubs-")
    rc = protoc.main(["protoc", f"-I{proto_root}", f"--python_out={out}",
                      f"--grpc_python_out={out}",
                      os.path.join(proto_root, "tokenmill", "v1", "service.proto")])
    if rc != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with {rc}")
    sys.path.insert(0, out)
    from tokenmill.v1 import service_pb2, service_pb2_grpc  # noqa: E402
    return service_pb2, service_pb2_grpc


def run_grpc(args):
    import grpc

    pb, rpc = load_stubs()
    stub = rpc.InferenceStub(grpc.insecure_channel(args.target))
    metadata = [("authorization", f"Bearer {args.api_key}")] if args.api_key else []
    request = pb.GenerateRequest(text=args.prompt, max_tokens=args.max_tokens,
                                 sampling=pb.SamplingParams(temperature=args.temperature))
    final = None
    # The call's timeout is the request's deadline on the server.
    for message in stub.Generate(request, timeout=args.timeout, metadata=metadata):
        print(message.text, end="", flush=True)
        if message.HasField("final"):
            final = message.final
    print()
    usage, timings, energy = final.usage, final.timings, final.energy
    joules = f"{energy.joules:.3f} J ({energy.energy_source})" if energy.HasField("joules") \
        else "unmeasured"
    print(f"--- finish: {pb.FinishReason.Name(final.finish_reasons[0])}; tokens: prompt "
          f"{usage.prompt_tokens} (cached {usage.cached_tokens}), generated "
          f"{usage.generated_tokens}; ttft {timings.ttft_s:.4f} s, e2e {timings.e2e_s:.4f} s; "
          f"energy: {joules}; cost {final.cost.cost:.6g} {final.cost.currency}")


def run_openai(args):
    import openai

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key or "unused",
                           timeout=args.timeout)
    model = client.models.list().data[0].id
    if args.chat:
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": args.prompt}],
            max_tokens=args.max_tokens, temperature=args.temperature, stream=True,
            stream_options={"include_usage": True})
        usage = None
        for chunk in stream:
            if chunk.choices:
                print(chunk.choices[0].delta.content or "", end="", flush=True)
            if chunk.usage is not None:
                usage = chunk.usage
        print()
    else:
        completion = client.completions.create(model=model, prompt=args.prompt,
                                               max_tokens=args.max_tokens,
                                               temperature=args.temperature)
        print(completion.choices[0].text)
        usage = completion.usage
    # tokenmill's own figures ride along in usage.tokenmill.
    figures = (usage.model_extra or {}).get("tokenmill", {})
    print(f"--- tokens: prompt {usage.prompt_tokens}, generated {usage.completion_tokens}; "
          f"ttft {figures.get('ttft_s')} s; joules {figures.get('joules')}; "
          f"cost {figures.get('cost')} {figures.get('currency')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="api", required=True)
    g = sub.add_parser("grpc", help="tokenmill.v1 over gRPC")
    g.add_argument("--target", default="127.0.0.1:50051")
    o = sub.add_parser("openai", help="the OpenAI-compatible HTTP API")
    o.add_argument("--base-url", default="http://127.0.0.1:8080/v1")
    o.add_argument("--chat", action="store_true", help="chat completion (needs a chat template)")
    for p in (g, o):
        p.add_argument("--prompt", default="Once upon a time")
        p.add_argument("--max-tokens", type=int, default=32)
        p.add_argument("--temperature", type=float, default=0.0)
        p.add_argument("--api-key", default=os.environ.get("TOKENMILL_API_KEY", ""))
        p.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    run_grpc(args) if args.api == "grpc" else run_openai(args)


if __name__ == "__main__":
    main()
