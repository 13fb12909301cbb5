"""Frames in a byte stream, and the transport that writes a loop turn's messages together:
what pycapnp hands over in pieces leaves in one write."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from proofrace.wire.frames import FrameCursor, WholeFramesProtocol


def frame(*segments: bytes) -> list[bytes]:
    """A frame as pycapnp writes it: the segment table, then each segment."""
    table = struct.pack("<I", len(segments) - 1) + b"".join(
        struct.pack("<I", len(s) // 8) for s in segments
    )
    if len(segments) % 2 == 0:
        table += b"\0" * 4
    return [table, *segments]


class Recorder:
    """What a real transport would have been asked to write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.written = asyncio.Event()
        self.closed = self.eof = self.reading = self.aborted = self.reset = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.written.set()

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def write_eof(self) -> None:
        if self.reset:
            raise OSError(107, "Transport endpoint is not connected")
        self.eof = True

    def resume_reading(self) -> None:
        self.reading = True

    def abort(self) -> None:
        self.aborted = True


class Inner:
    def connection_made(self, transport: object) -> None:
        self.transport = transport


def wrapped() -> tuple[Recorder, Any]:
    inner, real = Inner(), Recorder()
    WholeFramesProtocol(inner).connection_made(real)
    return real, inner.transport


def test_the_cursor_counts_frames_however_the_bytes_are_cut() -> None:
    stream = b"".join(frame(b"a" * 8, b"b" * 16)) + b"".join(frame(b"c" * 24))
    for cut in range(1, len(stream)):
        cursor = FrameCursor()
        done = cursor.feed(memoryview(stream[:cut])) + cursor.feed(memoryview(stream[cut:]))
        assert done == 2 and not cursor.inside


async def test_the_messages_of_one_turn_leave_together_on_the_next() -> None:
    """A client's `solve` and its pipelined `result`, or a dispatcher's answers to the solves
    it read in one turn: one send."""
    real, transport = wrapped()
    for piece in (*frame(b"s" * 16), *frame(b"r" * 8, b"t" * 8)):
        transport.write(piece)
    assert real.writes == []
    await real.written.wait()  # the loop's next turn
    assert real.writes == [b"".join((*frame(b"s" * 16), *frame(b"r" * 8, b"t" * 8)))]
    assert transport.is_closing() is False


async def test_what_is_held_leaves_before_a_close_and_before_the_last_write() -> None:
    real, transport = wrapped()
    table, body = frame(b"z" * 16)
    transport.write(table)
    transport.close()
    assert real.writes == [table] and real.closed
    real, transport = wrapped()
    transport.write(body)
    transport.write_eof()
    assert real.writes == [body] and real.eof


async def test_nothing_is_written_to_a_connection_closed_under_it() -> None:
    # A limit aborted it, or the peer reset it, while an answer was held for the turn's end.
    real, transport = wrapped()
    transport.write(frame(b"a" * 8)[0])
    real.closed = True
    transport.flush()  # what the next turn runs
    assert real.writes == []


async def test_large_pieces_are_not_copied_into_one() -> None:
    real, transport = wrapped()
    big = b"q" * (1 << 20)
    pieces = frame(big)
    for piece in pieces:
        transport.write(piece)
    await real.written.wait()
    assert real.writes == pieces


def test_the_padding_word_of_a_header_is_not_a_segment() -> None:
    table, *segments = frame(b"a" * 8, b"b" * 16)
    noisy = table[:-4] + b"\xff\xff\xff\x00"  # garbage where the padding goes
    cursor = FrameCursor()
    assert cursor.feed(memoryview(noisy + b"".join(segments))) == 1 and not cursor.inside


def test_a_frame_of_too_many_segments_is_refused_and_nothing_more_followed() -> None:
    cursor = FrameCursor()
    cursor.feed(memoryview(struct.pack("<I", 100_000) + b"\0" * 64))
    assert cursor.refused and cursor.feed(memoryview(b"".join(frame(b"x" * 8)))) == 0


async def test_after_its_last_write_the_connection_reads_on_to_see_the_peers_end() -> None:
    # After a peer's Abort the RPC system reads nothing more: reading on is what lets the
    # peer's FIN or reset close the connection.
    real, transport = wrapped()
    transport.write_eof()
    assert real.eof and real.reading and not real.aborted


async def test_a_peer_already_gone_at_the_last_write_ends_the_connection() -> None:
    # Its reset came first, so shutting the write side fails: the connection ends at once
    # instead of waiting for a send that will never come.
    real, transport = wrapped()
    real.reset = True
    transport.write_eof()
    assert real.aborted
