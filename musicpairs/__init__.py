"""musicpairs: paired piano-roll datasets from MIDI corpora, and pix2pix to convert them."""

from musicpairs.config import RollSpec
from musicpairs.errors import MidiReadError, MusicpairsError
from musicpairs.midi import Score, read_midi, write_midi
from musicpairs.roll import Roll, midi_to_roll, roll_to_midi

__version__ = "0.1.0"

# Names whose modules import torch: loaded on first use, so that ``import musicpairs``
# does not import torch.
_LAZY = {"PairStream": "musicpairs.loader", "PairLoader": "musicpairs.loader"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'musicpairs' has no attribute {name!r}")


__all__ = [
    "MidiReadError",
    "MusicpairsError",
    "PairLoader",
    "PairStream",
    "Roll",
    "RollSpec",
    "Score",
    "__version__",
    "midi_to_roll",
    "read_midi",
    "roll_to_midi",
    "write_midi",
]
