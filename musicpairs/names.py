"""What track names say: a melody or a singer (and how surely), a bass line, drums.

Words in a dozen languages, abbreviations, CJK names and one-letter typos ("MELOPY").
"""

from __future__ import annotations

import difflib
import functools
import re

# Words that name the melody or the singer, whole-word (Latin, Cyrillic) or as a substring
# (CJK): an unambiguous melody/vocal name.
_STRONG_WORDS = {
    "melody", "melodies", "mel", "mldy", "melo", "leadvocal", "leadvox", "vocal", "vocals",
    "voc", "vox", "voice", "vocalist", "singer", "sing", "singing", "soprano", "sop",
    "cantus", "canto", "cantante", "melodie", "mélodie", "melodia", "melodía", "melodi",
    "voix", "chanteur", "chanteuse", "stimme", "singstimme", "gesang", "sopran", "voz",
    "voce", "zang", "sång", "мелодия", "вокал", "голос",
}  # fmt: skip
_STRONG_CJK = ("旋律", "主旋", "人声", "人聲", "主唱", "演唱", "歌", "メロ", "ボーカル", "うた",
               "멜로디", "보컬", "노래")  # fmt: skip
# Words that name a leading part without saying it is the tune: they count only when no
# track is named as the melody or the voice.
_WEAK_WORDS = {"lead", "solo", "theme", "tune", "chant", "hook", "topline"}
# Long words close enough to match with a typo ("MELOPY", "MELDOY", "vocls").
_MELODY_FUZZY = ("melody", "melodie", "melodia", "vocals", "soprano")
# Words that make a named part an accompaniment ("Backing Vocals", "Vocal Harmony").
_NOT_MELODY_WORDS = {
    "backing", "back", "bgv", "bg", "bv", "bkg", "background", "backup", "harmony", "harm",
    "chord", "chords", "pad", "accomp", "accompaniment", "comp", "bass", "drum", "drums",
    "choir", "second", "secondary", "2nd", "alto", "tenor", "chorus", "aah", "aahs", "ooh",
    "oohs", "space", "syn", "synth",
}  # fmt: skip
# An instrument after a voice range names that instrument ("Soprano Sax"), not a voice.
_RANGE_WORDS = {"soprano", "sopran", "sop"}
_INSTRUMENT_WORDS = {"sax", "saxophone", "recorder", "clarinet", "cornet", "trombone", "ukulele"}
_BASS_WORDS = {"bass", "bajo", "basse", "basso", "bas", "contrabass", "bassline", "бас"}
_BASS_CJK = ("贝斯", "貝斯", "低音", "ベース", "베이스")
_DRUM_WORDS = {
    "drum", "drums", "drumkit", "perc", "percussion", "percussions", "snare", "kick",
    "hihat", "cymbal", "cymbals", "conga", "congas", "bongo", "bongos", "maraca", "maracas",
    "tambourine", "handclap", "timbales", "cowbell", "batterie", "schlagzeug", "bateria",
    "batería", "ударные",
}  # fmt: skip
# Drum words that are also other words ("Tom's Guitar", "Ride", "Kit's Piano"): they count
# only in a name that names no pitched instrument.
_DRUM_WORDS_ALONE = {"kit", "bd", "sd", "hh", "hat", "hats", "crash", "ride", "tom", "toms",
                     "shaker", "tamb", "clap", "claps"}  # fmt: skip
_PITCHED_WORDS = {
    "guitar", "gtr", "piano", "organ", "bass", "strings", "string", "sax", "flute", "trumpet",
    "brass", "violin", "cello", "synth", "lead", "melody", "vocal", "vocals", "voice", "pad",
    "keys", "harp", "clarinet", "oboe", "horn", "trombone", "bells", "marimba", "vibes",
}  # fmt: skip
_DRUM_CJK = ("鼓", "ドラム", "드럼")


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[\W_]+", name.casefold()) if t]


def _split_digits(tokens: list[str]) -> list[str]:
    # "melody2" and "vox1" name a melody too.
    return [re.sub(r"\d+$", "", t) or t for t in tokens]


@functools.lru_cache(maxsize=4096)
def melody_name_strength(name: str) -> int:
    """How surely a track name calls the track the melody.

    Returns:
        2 for a melody or vocal name ("Melody", "Lead Vocal", "Trumpet {Melody}",
        "Gesang", "主旋律", "MELOPY"); 1 for a weaker name ("Lead Guitar", "Solo",
        "Theme"); 0 for anything else, and for names that make the part an
        accompaniment ("Backing Vocals", "Vocal Harmony", "Soprano Sax").
    """
    tokens = _split_digits(_tokens(name))
    if any(t in _NOT_MELODY_WORDS for t in tokens):
        return 0
    strong = [t for t in tokens if t in _STRONG_WORDS]
    if strong and all(t in _RANGE_WORDS for t in strong) and any(
            t in _INSTRUMENT_WORDS for t in tokens):
        return 0
    if strong or any(w in name for w in _STRONG_CJK) or any(
            len(t) >= 5 and difflib.SequenceMatcher(None, t, w).ratio() >= 0.8
            for t in tokens for w in _MELODY_FUZZY):
        return 2
    return 1 if any(t in _WEAK_WORDS for t in tokens) else 0


def name_says_melody(name: str) -> bool:
    """Whether a track name calls the track a melody, surely or weakly (see
    :func:`melody_name_strength`)."""
    return melody_name_strength(name) > 0


@functools.lru_cache(maxsize=4096)
def name_says_bass(name: str) -> bool:
    """Whether a track name calls the track a bass line ("Bass", "Fretless Bass", "贝斯")."""
    tokens = _split_digits(_tokens(name))
    if any(t in _DRUM_WORDS for t in tokens):  # "Bass Drum"
        return False
    return any(t in _BASS_WORDS for t in tokens) or any(w in name for w in _BASS_CJK)


@functools.lru_cache(maxsize=4096)
def name_says_drums(name: str) -> bool:
    """Whether a track name calls the track drums or percussion ("Drums", "Bass Drum",
    "Hi Hat", "Perc.", "Schlagzeug")."""
    tokens = _split_digits(_tokens(name))
    if any(t in _DRUM_WORDS for t in tokens) or any(w in name for w in _DRUM_CJK):
        return True
    return (any(t in _DRUM_WORDS_ALONE for t in tokens)
            and not any(t in _PITCHED_WORDS for t in tokens))
