#!/usr/bin/python3
"""A minimal deltaserve client: streams one generation and prints it as it arrives.

Uses Debian's python3-grpcio and protoc (no generated service stubs): the message classes are
generated from proto/deltaserve/v1/deltaserve.proto into a temporary directory at start.

  server/example_client.py --target localhost:50051 --prompt "In the beginning" --max-new-tokens 64
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile

import grpc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_messages():
    out = tempfile.mkdtemp(prefix="deltaserve-client-")
    subprocess.run(["protoc", "-I", os.path.join(ROOT, "proto"), "--python_out=" + out,
                    "deltaserve/v1/deltaserve.proto"], check=True)
    spec = importlib.util.spec_from_file_location(
        "deltaserve_pb2", os.path.join(out, "deltaserve", "v1", "deltaserve_pb2.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", default="localhost:50051")
    p.add_argument("--prompt", default="In the beginning")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--api-key", help="sent as `authorization: Bearer <key>`")
    p.add_argument("--tls-ca", help="PEM root certificate: connect with TLS")
    p.add_argument("--timeout", type=float, default=120, help="call deadline, seconds")
    args = p.parse_args()

    pb = load_messages()
    if args.tls_ca:
        with open(args.tls_ca, "rb") as f:
            channel = grpc.secure_channel(args.target, grpc.ssl_channel_credentials(f.read()))
    else:
        channel = grpc.insecure_channel(args.target)
    generate = channel.unary_stream("/deltaserve.v1.DeltaServe/Generate",
                                    request_serializer=pb.GenerateRequest.SerializeToString,
                                    response_deserializer=pb.GenerateResponse.FromString)
    sampling = pb.SamplingParams(temperature=args.temperature)
    if args.seed is not None:
        sampling.seed = args.seed
    request = pb.GenerateRequest(text=args.prompt, sampling=sampling,
                                 stopping=pb.StoppingParams(max_new_tokens=args.max_new_tokens))
    metadata = (("authorization", "Bearer " + args.api_key),) if args.api_key else None
    try:
        for msg in generate(request, timeout=args.timeout, metadata=metadata):
            sys.stdout.write(msg.text)
            sys.stdout.flush()
            if msg.HasField("finished"):
                f = msg.finished
                print("\n[%s: %d prompt tokens, %d generated, first token %.3f s, total %.3f s]" % (
                    pb.FinishReason.Name(f.finish_reason), f.usage.prompt_tokens,
                    f.usage.generated_tokens, f.timings.first_token_seconds,
                    f.timings.total_seconds), file=sys.stderr)
    except grpc.RpcError as e:
        print("\nerror: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
