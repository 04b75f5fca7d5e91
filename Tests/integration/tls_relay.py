"""A TLS-terminating relay for tests: a plain-text loopback port whose every
connection is carried over TLS (with the CA checked) to a server, so tools
that speak only plain text (memccapable, the differential corpus's raw
sockets) can be pointed at a TLS port.

It runs on an asyncio loop of its own thread: one TLS session is only ever
touched by that thread (OpenSSL sessions are not safe to read and write
from two threads at once). Each chunk read from one side is written to the
other at once (one TLS record per chunk), so the way a test splits its
bytes survives the relay. A close on either side closes the other: a reset
as a reset (SO_LINGER 0), so a server that resets a connection is seen to
do so through the relay. Bounded: `stop()` ends the loop and every
connection.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading

import harness


class TLSRelay:
    def __init__(self, target: tuple[str, int], context: ssl.SSLContext, server_hostname: str = harness.HOST):
        self.target = target
        self.context = context
        self.server_hostname = server_hostname
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-relay", daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._relay, harness.HOST, 0), self._loop).result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        self.addr = (harness.HOST, self.port)
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> "TLSRelay":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        async def close_all():
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(close_all(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._writers.add(client_writer)
        try:
            server_reader, server_writer = await asyncio.wait_for(
                asyncio.open_connection(*self.target, ssl=self.context, server_hostname=self.server_hostname), 10)
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            _reset(client_writer)
            return
        self._writers.add(server_writer)
        for writer in (client_writer, server_writer):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(self._pump(client_reader, server_writer, from_server=False),
                             self._pump(server_reader, client_writer, from_server=True))
        self._writers.discard(client_writer)
        self._writers.discard(server_writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, from_server: bool) -> None:
        """Copies reader to writer until the reader ends; then ends the writer
        the same way (a reset as a reset)."""
        reset = False
        while True:
            try:
                chunk = await reader.read(65536)
            except (ConnectionError, ssl.SSLError, OSError):
                reset = True
                break
            if not chunk:
                break
            try:
                writer.write(chunk)
                await writer.drain()
            except (ConnectionError, ssl.SSLError, OSError):
                reset = True
                break
        if reset:
            _reset(writer)
            return
        if from_server:
            # The server closed: so does the relay, towards the client.
            writer.close()
            return
        # The client ended its side: TLS has no half-close, so the server is
        # told with the end of the TCP stream's write side, which it reads as
        # the end of input, as in plain text.
        sock = writer.get_extra_info("socket")
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


def client_context(certs: str, ca: str = "ca", cert: str | None = None) -> ssl.SSLContext:
    """Checks the server's certificate against the test CA `ca` in `certs`
    (scripts/make-test-ca); with `cert`, presents that client certificate."""
    ctx = ssl.create_default_context(cafile=f"{certs}/{ca}.crt")
    if cert:
        ctx.load_cert_chain(f"{certs}/{cert}.crt", f"{certs}/{cert}.key")
    return ctx
