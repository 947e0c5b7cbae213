"""Hand-built Standard MIDI Files, byte by byte, for edge cases no writer produces."""

from __future__ import annotations

import struct


def vlq(n: int) -> bytes:
    """MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    return bytes(reversed(out))


def track(events: list[tuple[int, bytes]]) -> bytes:
    """An MTrk chunk from (delta ticks, raw event bytes); end-of-track is appended."""
    body = b"".join(vlq(dt) + ev for dt, ev in events) + b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def smf(tracks: list[bytes], tpq: int = 480, fmt: int = 1) -> bytes:
    """A whole file: MThd header then the given track chunks."""
    return b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), tpq) + b"".join(tracks)


def note(pitch: int, velocity: int = 64, length: int = 480, channel: int = 0):
    """Note-on then note-off events (delta-timed) for one note."""
    return [(0, bytes([0x90 | channel, pitch, velocity])),
            (length, bytes([0x80 | channel, pitch, 0]))]


def simple_song(tpq: int = 480) -> bytes:
    """A valid two-track file: a tempo track and a three-note melody."""
    tempo = track([(0, b"\xff\x51\x03\x07\xa1\x20")])  # 500,000 us per quarter
    melody = track([(0, b"\xff\x03\x06Melody")] + note(60) + note(62) + note(64))
    return smf([tempo, melody], tpq=tpq)
