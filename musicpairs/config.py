"""Frozen configuration dataclasses, read from TOML-like dicts and written as JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RollSpec:
    """How a score is laid on the beat grid.

    Attributes:
        steps_per_beat: Grid steps per quarter note (4 = sixteenths).
        max_steps: Longest song accepted, in steps. A file asking for more (a stray
            event hours after the music, a hostile file) is refused with a
            ``MidiReadError`` instead of allocating gigabytes. The default, 2**17 steps,
            is 32,768 beats: over four hours at 120 bpm.
        max_roll_bytes: Largest roll accepted (tracks x 2 x 128 x T bytes); a file with
            thousands of tracks is refused rather than taking a worker's memory.
    """

    steps_per_beat: int = 4
    max_steps: int = 1 << 17
    max_roll_bytes: int = 1 << 29

    def __post_init__(self):
        if not isinstance(self.steps_per_beat, int) or self.steps_per_beat < 1:
            raise ValueError(f"steps_per_beat must be a positive int, got {self.steps_per_beat!r}")
        for name in ("max_steps", "max_roll_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RollSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown RollSpec keys: {sorted(unknown)}")
        return cls(**data)
