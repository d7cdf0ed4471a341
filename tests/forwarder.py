"""A TCP forwarder for tests, run as a process of its own:

    python tests/forwarder.py LISTEN_ADDRESS TARGET_HOST:PORT [TARGET_HOST:PORT ...]

For each target it listens on a free port of LISTEN_ADDRESS (and of that address
only) and passes every connection to the target; it prints one line
``LISTEN_ADDRESS:PORT TARGET_HOST:PORT`` per target once listening. It stops when
its standard input closes (the test closed it, or died) or on SIGTERM.

tests/test_scaleout.py runs it on the bridge address of its network namespaces so
that the hosts inside reach PostgreSQL and Redis, which listen on 127.0.0.1 only and
are not reconfigured. asyncio protocols, in a process apart from the test's load
threads, so that forwarding does not compete with them for one interpreter lock.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading


class _Upstream(asyncio.Protocol):
    """The connection to the target: what it sends goes back to the client."""

    def __init__(self, client: asyncio.Transport):
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.client.write(data)

    def connection_lost(self, exc):
        self.client.close()


class _Client(asyncio.Protocol):
    """A connection accepted on the listening address."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.upstream: _Upstream | None = None
        self.pending: list[bytes] = []
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self):
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(
                lambda: _Upstream(self.transport), *self.target
            )
        except OSError:
            self.transport.close()
            return
        if self.closed:
            upstream.transport.close()
            return
        self.upstream = upstream
        for data in self.pending:
            upstream.transport.write(data)
        self.pending = []

    def data_received(self, data):
        if self.upstream is None:
            self.pending.append(data)
        else:
            self.upstream.transport.write(data)

    def connection_lost(self, exc):
        self.closed = True
        if self.upstream is not None:
            self.upstream.transport.close()


async def _serve(listen: str, targets: list[tuple[str, int]]) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)

    def watch_stdin():
        sys.stdin.read()  # returns at end of file: the parent closed it or died
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    servers = []
    for target in targets:
        server = await loop.create_server(
            lambda t=target: _Client(t), listen, 0, reuse_address=True
        )
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        print(f"{listen}:{port} {target[0]}:{target[1]}", flush=True)
    await done.wait()
    for server in servers:
        server.close()


def main(argv: list[str]) -> None:
    listen, *raw = argv
    targets = []
    for item in raw:
        host, port = item.rsplit(":", 1)
        targets.append((host, int(port)))
    asyncio.run(_serve(listen, targets))


if __name__ == "__main__":
    main(sys.argv[1:])
