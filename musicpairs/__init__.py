"""musicpairs: paired piano-roll datasets from MIDI corpora, and pix2pix to convert them."""

from musicpairs.config import RollSpec
from musicpairs.errors import MidiReadError, MusicpairsError
from musicpairs.midi import Score, read_midi, write_midi
from musicpairs.roll import Roll, midi_to_roll, roll_to_midi

__version__ = "0.1.0"

__all__ = [
    "MidiReadError",
    "MusicpairsError",
    "Roll",
    "RollSpec",
    "Score",
    "__version__",
    "midi_to_roll",
    "read_midi",
    "roll_to_midi",
    "write_midi",
]
