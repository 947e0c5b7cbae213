"""Lyric shingles: karaoke text events and lyric events read from a MIDI file's bytes."""

from __future__ import annotations

import io

import mido
import numpy as np

from musicpairs.dedup import DEFAULT_THRESHOLD, fingerprint_midi
from musicpairs.lyrics import MIN_EVENTS, lyric_shingles, lyric_texts

from conftest import synth_song

VERSE = ("strumming my pain with his fingers singing my life with his words killing me "
         "softly with his song telling my whole life with his words").split()
OTHER = ("yesterday all my troubles seemed so far away now it looks as though they are "
         "here to stay oh I believe in yesterday suddenly").split()


def with_lyrics(data: bytes, events: list[str], kind: str) -> bytes:
    """The MIDI file with a track of ``kind`` ("text" or "lyrics") events added."""
    midi = mido.MidiFile(file=io.BytesIO(data))
    track = mido.MidiTrack([mido.MetaMessage("track_name", name="Words", time=0)])
    track += [mido.MetaMessage(kind, text=e, time=120) for e in events]
    midi.tracks.append(track)
    out = io.BytesIO()
    midi.save(file=out)
    return out.getvalue()


def karaoke(words: list[str]) -> list[str]:
    """Soft Karaoke style: an ``@`` header, then syllables carrying their own breaks."""
    events = ["@KMIDI KARAOKE FILE", "@TSome Title"]
    for i, w in enumerate(words):
        half = max(1, len(w) // 2)  # every word cut into two syllables
        events += [("/" if i % 6 == 0 else " ") + w[:half], w[half:]] if len(w) > 1 \
            else [" " + w]
    return events


def test_karaoke_syllables_and_lyric_events_sing_the_same_words():
    a = with_lyrics(synth_song(1), karaoke(VERSE * 2), "text")
    b = with_lyrics(synth_song(2), [w.capitalize() for w in VERSE * 2], "lyrics")
    assert "@" not in lyric_texts(a)[0] and "strumming my pain" in lyric_texts(a)[0].lower()
    sa, sb = lyric_shingles(a), lyric_shingles(b)
    assert len(sa) == len(set(sa)) and np.all(np.diff(sa.astype(np.int64)) > 0)
    assert np.array_equal(sa, sb) and len(sa) == len(VERSE)  # the verse sung twice
    # A hyphen ending a syllable joins it to the next one: "wo-" "rds ".
    hyphenated = [e for w in VERSE * 2 for e in ([w[:2] + "-", w[2:] + " "] if len(w) > 3
                                                 else [w + " "])]
    assert np.array_equal(lyric_shingles(with_lyrics(synth_song(3), hyphenated, "lyrics")), sa)


def test_other_words_a_title_line_or_no_lyrics_give_nothing_in_common():
    a = with_lyrics(synth_song(1), VERSE * 2, "lyrics")
    assert len(np.intersect1d(lyric_shingles(a), lyric_shingles(
        with_lyrics(synth_song(1), OTHER * 2, "lyrics")))) == 0
    few = with_lyrics(synth_song(1), VERSE[: MIN_EVENTS - 1], "text")  # a title, a credit
    assert len(lyric_shingles(few)) == 0 and len(lyric_shingles(synth_song(1))) == 0


def test_two_arrangements_with_other_tunes_meet_on_their_words():
    """Different notes, same lyrics: the fingerprints share enough to be one song."""
    a = with_lyrics(synth_song(4), karaoke(VERSE * 3), "text")
    b = with_lyrics(synth_song(6), VERSE * 3, "lyrics")
    shared = len(np.intersect1d(fingerprint_midi(a), fingerprint_midi(b)))
    tunes = len(np.intersect1d(fingerprint_midi(synth_song(4)), fingerprint_midi(synth_song(6))))
    assert tunes < DEFAULT_THRESHOLD <= shared
    assert np.array_equal(fingerprint_midi(a, lyrics=False), fingerprint_midi(synth_song(4)))
