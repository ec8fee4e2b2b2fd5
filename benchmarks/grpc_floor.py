"""The ceiling of any Python gRPC server for benchmarks/serve_load.py: grpcio's asyncio server
answering ModelInfer with ready-made bytes, doing no work at all.

It reads nothing of the request (bytes in, bytes out: no protobuf parsing, no model) and answers
each request with the serialized ModelInferResponse that ``--responses`` holds for a request of
that size (serve_load writes the right answers for its batch-1 and batch-32 requests, so its
correctness check passes). Whatever req/s it reaches under a load generator is what grpc.aio
and that generator cost by themselves on the machine: no grpc.aio server, the service's or
KServe's, can go faster there. Listens on 127.0.0.1 only.

    python benchmarks/grpc_floor.py --port 8101 --responses answers.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from pathlib import Path

import grpc


async def serve(port: int, answers: dict[int, bytes]) -> None:
    async def infer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        answer = answers.get(len(request))
        if answer is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no answer for a {len(request)}-byte request")
        return answer

    method = grpc.unary_unary_rpc_method_handler(infer)  # no (de)serializers: raw bytes both ways
    handler = grpc.method_handlers_generic_handler("inference.GRPCInferenceService", {"ModelInfer": method})
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", -1)])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--responses", type=Path, required=True,
                        help="JSON: request size in bytes -> base64 of the serialized response")
    args = parser.parse_args()
    answers = {int(size): base64.b64decode(body) for size, body in json.loads(args.responses.read_text()).items()}
    try:
        asyncio.run(serve(args.port, answers))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
