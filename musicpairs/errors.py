"""Typed exceptions shared by every stage.

Bad input raises one of these, naming the file and the reason, so that a build can
put the file in its rejects table and go on, and the CLI can print one line.
"""

from __future__ import annotations


class MusicpairsError(Exception):
    """Base class of every error musicpairs raises on purpose."""


class MidiReadError(MusicpairsError, ValueError):
    """A MIDI file could not be read or is not usable as music.

    Attributes:
        path: The file (or a label such as ``"<bytes>"``) that failed.
        reason: Why, in a few words, without the path.
    """

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # Keep the two fields when the error crosses a process boundary (Dask workers).
        return (type(self), (self.path, self.reason))
