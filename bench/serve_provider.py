"""The benchmarks' provider in a process of its own: ``python -m bench.serve_provider LATENCY_S ANSWER``.

Prints its base URL, then serves the loopback fake provider (every request answered with ``ANSWER`` after
``LATENCY_S`` seconds) until its stdin closes. Its own CPU is then never counted as a client's. It keeps no
request (``record=False``): a run's thousands of recorded histories made its garbage collection stall answers.
"""

from __future__ import annotations

import asyncio
import sys

from tests.fakes.provider_server import FakeProviderServer, ok


async def serve(latency_s: float, answer: str) -> None:
    async with FakeProviderServer(default=ok(answer), latency_s=latency_s, record=False) as server:
        print(server.base_url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it


if __name__ == "__main__":
    asyncio.run(serve(float(sys.argv[1]), sys.argv[2]))
