"""The raw HTTP floor in a process of its own, driven as ``modelbot chat --json`` is: a line in, a JSON line out.

``modelbot chat`` is a process of its own, so each of its turns also crosses two pipes (the driver's line in,
the reply out) and wakes two processes, which the in-process floor never does. This is the floor with that
boundary and nothing else: stdin read on the event loop (as the console adapter reads a pipe), the floor client
of ``bench.floor`` keeping the conversation, the reply written as one JSON line; ``/new`` starts a new
conversation. It imports neither modelbot nor an SDK.

Run by ``bench.conversation`` (``bench.chat_process.FloorProcess``): ``python -m bench.floor_process BASE_URL``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import aiohttp

from bench.floor import Floor


async def serve(base_url: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        async with aiohttp.ClientSession() as session:
            floor = Floor(base_url, session)
            while line := await reader.readline():
                text = line.decode().rstrip("\n")
                if text == "/new":
                    await floor.reset()
                    reply = {"text": "New conversation."}
                else:
                    reply = {"text": await floor.ask(text)}
                sys.stdout.write(json.dumps(reply) + "\n")
                sys.stdout.flush()
    finally:
        transport.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
