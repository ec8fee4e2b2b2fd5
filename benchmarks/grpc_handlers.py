"""What a grpc.aio unary handler costs against the stream-unary form the service uses.

serving/grpc_server.py registers every unary method of Triton's service as stream-unary, so that
its handler runs when a call begins and reads the one request message within ``body_timeout_s``
(grpc.aio's own unary path waits for the message before any handler runs, without a limit of its
own). On the wire the two are the same. This measures what the change costs: an echo method as a
plain unary handler and wrapped by the service's own ``_read_within``, on one grpc.aio server, called by 8 concurrent clients of one channel in the same
process, in interleaved rounds, reporting the CPU time per call (client and server together; CPU
time moves less with the machine's load than wall time).

    python benchmarks/grpc_handlers.py --rounds 8 --calls 2000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's serving package
from serving.grpc_server import _read_within  # noqa: E402 - the service's own stream-unary wrapper


async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def measure(rounds: int, calls: int, clients: int, size: int) -> dict[str, list[float]]:
    same = lambda data: data  # noqa: E731 - bytes in, bytes out
    handlers = {"unary": grpc.unary_unary_rpc_method_handler(unary, same, same),
                "stream-unary": grpc.stream_unary_rpc_method_handler(_read_within(unary, 30.0), same, same)}
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    payload = b"x" * size
    cpu: dict[str, list[float]] = {name: [] for name in handlers}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            methods = {name: channel.unary_unary(f"/bench.Echo/{name}") for name in handlers}
            for name, method in methods.items():  # warm-up
                await asyncio.gather(*(method(payload) for _ in range(100)))
            for _ in range(rounds):
                for name, method in methods.items():
                    async def client(count: int) -> None:
                        for _ in range(count):
                            assert await method(payload) == payload
                    started = time.process_time()
                    await asyncio.gather(*(client(calls // clients) for _ in range(clients)))
                    cpu[name].append((time.process_time() - started) / (calls // clients * clients) * 1e6)
    finally:
        await server.stop(None)
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=2000, help="calls per kind and round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--size", type=int, default=3200, help="request bytes (a batch-1 SimpleCNN input is 3,136)")
    args = parser.parse_args()
    cpu = asyncio.run(measure(args.rounds, args.calls, args.clients, args.size))
    unary_cost = statistics.median(cpu["unary"])
    for name, values in cpu.items():
        median = statistics.median(values)
        print(f"{name:13} {median:7.1f} us CPU per call (median of {len(values)} rounds; {median / unary_cost:.3f}x "
              f"unary)   per round: {', '.join(f'{v:.0f}' for v in values)}")


if __name__ == "__main__":
    main()
