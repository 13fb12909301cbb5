"""Frames in a byte stream, and the transport that writes whole ones: a message that pycapnp
hands over in pieces leaves in one write."""

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


def wrapped(whole_turn: bool = False) -> tuple[Recorder, Any]:
    inner, real = Inner(), Recorder()
    WholeFramesProtocol(inner, whole_turn).connection_made(real)
    return real, inner.transport


def test_the_cursor_counts_frames_however_the_bytes_are_cut() -> None:
    stream = b"".join(frame(b"a" * 8, b"b" * 16)) + b"".join(frame(b"c" * 24))
    for cut in range(1, len(stream)):
        cursor = FrameCursor()
        done = cursor.feed(memoryview(stream[:cut])) + cursor.feed(memoryview(stream[cut:]))
        assert done == 2 and not cursor.inside


async def test_a_message_written_in_pieces_leaves_in_one_write() -> None:
    real, transport = wrapped()
    for piece in frame(b"x" * 32, b"y" * 8):
        transport.write(piece)
    assert real.writes == [b"".join(frame(b"x" * 32, b"y" * 8))]
    assert transport.is_closing() is False


async def test_an_unfinished_frame_still_leaves_on_the_next_turn_and_at_close() -> None:
    real, transport = wrapped()
    table, body = frame(b"z" * 16)
    transport.write(table)
    assert real.writes == []
    await real.written.wait()  # on the loop's next turn, with no more of the frame
    assert real.writes == [table]
    transport.write(body[:8])
    transport.close()
    assert real.writes == [table, body[:8]] and real.closed


async def test_a_client_sends_the_messages_of_one_turn_together() -> None:
    """A client's `solve` and its pipelined `result` leave in the same turn: one send."""
    real, transport = wrapped(whole_turn=True)
    for piece in (*frame(b"s" * 16), *frame(b"r" * 8, b"t" * 8)):
        transport.write(piece)
    assert real.writes == []
    await real.written.wait()  # the loop's next turn
    assert real.writes == [b"".join((*frame(b"s" * 16), *frame(b"r" * 8, b"t" * 8)))]
    transport.write(frame(b"c" * 8)[0])
    transport.close()  # what is held leaves before the close
    assert real.writes[1:] == [frame(b"c" * 8)[0]] and real.closed


async def test_large_pieces_are_not_copied_into_one() -> None:
    real, transport = wrapped()
    big = b"q" * (1 << 20)
    pieces = frame(big)
    for piece in pieces:
        transport.write(piece)
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
