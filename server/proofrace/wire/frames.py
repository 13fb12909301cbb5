"""Cap'n Proto frames in a byte stream, and a transport that writes a loop turn's messages
together.

pycapnp hands its asyncio transport each message in pieces (the segment table, then each
segment), and asyncio sends each piece at once, in a `send()` of its own: two system calls
or more per message, and a peer woken by a segment table it cannot use yet. On loopback,
where a send also runs the receiving side's work, that doubled the cost of every call. So
`WholeFramesProtocol` wraps pycapnp's stream protocol and hands it a transport that holds
what is written until the loop's next turn, then writes it at once: every message of one
turn leaves in one send. A client's `solve` and its pipelined `result()` go together; a
dispatcher that reads eight solves in one turn answers them, and sends their eight calls to
a worker, in one send each (measured: 3.1 sends per remote attempt before, 1.2 after).
Nothing waits on the send of a `solve`'s answer (the clients pipeline on it), and an
answer leaves on the turn after the one that made it, ahead of the input that came
meanwhile.

`FrameCursor` follows the frame boundaries in a byte stream (header arithmetic only, no
copy); the listener's watch on unfinished messages (`limits.FrameWatch`) reads it.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import capnp

# Cap'n Proto's own limit on a message's segments (its reader refuses more).
MAX_SEGMENTS = 512
# Pieces held this large are written as they are: a copy would cost more than a send.
_JOIN_BYTES = 64 * 1024


class FrameCursor:
    """Where a stream of frames stands: inside a frame, or between two."""

    def __init__(self) -> None:
        self._header = bytearray()  # the current frame's header, while incomplete
        self._segments = 0  # known once the header's first word is in
        self._header_size = 4  # then 4 + 4 per segment, padded to a multiple of 8
        self._body_left = 0  # bytes of the current frame's segments still to come
        self.inside = False  # part of a frame has been seen, not all of it
        self.refused = False  # a frame of more segments than Cap'n Proto reads

    def feed(self, data: memoryview) -> int:
        """Follow `data`; returns how many frames it completed. Once a frame is refused
        (Cap'n Proto closes such a connection itself), nothing more is followed."""
        done = 0
        at, end = 0, len(data)
        header = self._header
        while at < end and not self.refused:
            self.inside = True
            if self._body_left:
                step = min(self._body_left, end - at)
                self._body_left -= step
                at += step
                if not self._body_left:
                    done += 1
                    self.inside = False
                continue
            take = min(self._header_size - len(header), end - at)
            header += data[at : at + take]
            at += take
            if len(header) == 4 and self._header_size == 4:
                segments = self._segments = int.from_bytes(header, "little") + 1
                if segments > MAX_SEGMENTS:
                    self.refused = True
                    break
                self._header_size = 4 + 4 * segments + (4 if segments % 2 == 0 else 0)
            elif len(header) == self._header_size:
                sizes: tuple[int, ...] = struct.unpack_from(f"<{self._segments}I", header, 4)
                self._body_left = 8 * sum(sizes)
                header.clear()
                self._header_size = 4
                if not self._body_left:
                    done += 1
                    self.inside = False
        return done


class _TurnWrites:
    """The transport as pycapnp sees it: writes are held until the loop's next turn, then
    written together; everything else is the real transport's."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._held: list[bytes] = []
        self._due: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        self._held.append(data)
        if self._due is None:
            self._due = asyncio.get_running_loop().call_soon(self.flush)

    def writelines(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self.write(piece)

    def flush(self) -> None:
        if self._due is not None:
            self._due.cancel()
            self._due = None
        held, self._held = self._held, []
        if self._transport.is_closing():
            return  # closed or lost under it (a limit's abort, a reset): nowhere to go
        if len(held) == 1 or sum(map(len, held)) > _JOIN_BYTES:
            for piece in held:
                self._transport.write(piece)
        elif held:
            self._transport.write(b"".join(held))

    def write_eof(self) -> None:
        # The RPC system shuts its writing only as the connection ends, after a peer's Abort,
        # say, and reads nothing more then. The peer may be gone already (asyncio's write_eof
        # raises ENOTCONN after a reset): the connection ends here, as a failed send would end
        # it. Otherwise reading on lets the peer's own end (its FIN, or a reset) close it.
        self.flush()
        try:
            self._transport.write_eof()
        except OSError:
            self._transport.abort()
            return
        self._transport.resume_reading()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class WholeFramesProtocol(asyncio.BufferedProtocol):
    """pycapnp's stream protocol, handed a transport that writes each loop turn's messages
    (whole frames) in one send; everything else passes through. `transport` is the real
    one."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._inner.connection_made(_TurnWrites(transport))

    def get_buffer(self, sizehint: int) -> Any:
        return self._inner.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self._inner.buffer_updated(nbytes)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        result: bool | None = self._inner.eof_received()
        return result

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


Connect = Callable[[Callable[[], asyncio.BaseProtocol]], Awaitable[object]]


async def open_stream(connect: Connect) -> Any:
    """A pycapnp stream that writes each loop turn's messages in one send. `connect(factory)`
    makes the connection: the loop's `create_connection` or `create_unix_connection` with its
    arguments bound."""
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    await connect(lambda: WholeFramesProtocol(capnp.AsyncIoStream._connect(ready.set_result)))
    return await ready
