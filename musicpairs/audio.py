"""Audio: what musicpairs writes as MIDI, synthesized with a General MIDI SoundFont.

Synthesis is symusic's ``Synthesizer`` (a C++ SoundFont renderer, already a dependency).
The SoundFont comes from ``--soundfont``, else ``$MUSICPAIRS_SOUNDFONT``, else the first
of the standard system locations that exists (Debian and Ubuntu package several GM
SoundFonts; ``apt install fluid-soundfont-gm`` is one). Nothing is downloaded: with no
SoundFont found, :class:`AudioError` says in one line what to install or pass.

Audio is written as WAV (16-bit PCM), or as FLAC when the ``soundfile`` package is
installed. Its length is the MIDI's (the last note's end, in seconds) plus at most
``RELEASE_SECONDS`` of the last notes dying away.
"""

from __future__ import annotations

import functools
import io
import os
import wave
from os import PathLike
from pathlib import Path

import numpy as np

from musicpairs.errors import MusicpairsError

ENV = "MUSICPAIRS_SOUNDFONT"
#: Where Debian, Ubuntu and Fedora packages put General MIDI SoundFonts, best first.
SYSTEM_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf3",
    "/usr/share/soundfonts/MuseScore_General.sf3",
)
#: The one line said when no SoundFont is found.
NO_SOUNDFONT = (f"no General MIDI SoundFont found: install one (Debian/Ubuntu: apt install "
                f"fluid-soundfont-gm), or pass --soundfont FILE.sf2, or set {ENV}")
SAMPLE_RATE = 22050
RELEASE_SECONDS = 0.5
#: Synthesized audio is scaled so that its loudest sample sits here (SoundFont voices
#: add up well past full scale).
PEAK = 0.9


class AudioError(MusicpairsError):
    """Audio cannot be made: no SoundFont, an unreadable one, or a format not written."""


def find_soundfont(explicit: str | PathLike | None = None) -> Path:
    """The SoundFont to synthesize with: ``explicit``, else ``$MUSICPAIRS_SOUNDFONT``,
    else the first of :data:`SYSTEM_SOUNDFONTS` that exists.

    Raises:
        AudioError: ``explicit`` or the variable names no file, or none is found.
    """
    for given, what in ((explicit, "--soundfont"), (os.environ.get(ENV) or None, ENV)):
        if given is not None:
            path = Path(given)
            if not path.is_file():
                raise AudioError(f"{path}: no such SoundFont (from {what})")
            return path
    for candidate in SYSTEM_SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise AudioError(NO_SOUNDFONT)


@functools.lru_cache(maxsize=2)
def _synthesizer(path: str, sample_rate: int):
    from symusic import Synthesizer

    try:
        return Synthesizer(path, sample_rate=sample_rate)
    except Exception as e:  # the C++ side raises several kinds for a bad file
        raise AudioError(f"{path}: not a readable SoundFont ({e})") from e


def synthesize(midi: bytes, soundfont: str | PathLike, *,
               sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """MIDI bytes -> float32 mono audio at ``sample_rate``, its peak at :data:`PEAK`:
    the MIDI's duration plus at most :data:`RELEASE_SECONDS` of release."""
    from symusic import Score

    score = Score.from_midi(midi)
    duration = score.to("second").end() if score.note_num() else 0.0
    audio = np.asarray(_synthesizer(str(soundfont), sample_rate).render(score, stereo=False),
                       np.float32).reshape(-1)
    length = int(round((duration + RELEASE_SECONDS) * sample_rate))
    if len(audio) < length:
        audio = np.concatenate([audio, np.zeros(length - len(audio), np.float32)])
    audio = audio[:length]
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    return audio * (PEAK / peak) if peak > 0 else audio


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Mono float audio -> a 16-bit PCM WAV file's bytes."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def write_audio(midi: bytes, out: str | PathLike, *, soundfont: str | PathLike | None = None,
                sample_rate: int = SAMPLE_RATE) -> dict:
    """Synthesize MIDI bytes to ``out`` (``.wav``; ``.flac`` with the ``soundfile``
    package), written atomically.

    Returns:
        ``{"audio": path, "seconds": float, "soundfont": path}``.

    Raises:
        AudioError: No SoundFont, or a suffix this backend does not write.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".wav", ".flac"):
        raise AudioError(f"{out}: audio is written as .wav (or .flac), not "
                         f"{suffix or 'a file without a suffix'}")
    if suffix == ".flac":
        try:
            import soundfile
        except ImportError as e:
            raise AudioError(f"{out}: FLAC needs the soundfile package (pip install "
                             "soundfile); .wav needs nothing more") from e
    font = find_soundfont(soundfont)
    audio = synthesize(midi, font, sample_rate=sample_rate)
    tmp = out.with_name(f".{out.name}.tmp")
    if suffix == ".wav":
        tmp.write_bytes(wav_bytes(audio, sample_rate))
    else:
        soundfile.write(str(tmp), audio, sample_rate, format="FLAC")
    tmp.replace(out)
    return {"audio": str(out), "seconds": len(audio) / sample_rate, "soundfont": str(font)}
