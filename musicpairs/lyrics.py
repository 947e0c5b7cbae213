"""Lyric shingles: the words a karaoke or lyric-bearing MIDI file sings, for fingerprints.

A third of Lakh's files carry their lyrics: karaoke files (``.kar``, Soft Karaoke) as text
events (meta type 1) one syllable each, others as lyric events (meta type 5). Versions
of a song that share no stretch of tune (a solo-piano karaoke arrangement against a band
arrangement) still sing the same words, and different songs do not. A file's lyric
shingles are hashes of its runs of 5 consecutive words, kept beside its melodic shingles
(``dedup.py``) and counted with them.

The events are found by a scan of the raw bytes for ``FF 01`` / ``FF 05`` with a one-byte
length (every syllable is shorter than 128 bytes), so no second parse is needed and a
parser that drops text events loses nothing. Only a kind of event that occurs at least
``MIN_EVENTS`` times counts as lyrics (a copyright line or a title is one or two events),
and Soft Karaoke's ``@`` header events (title, language, version) are left out.
"""

from __future__ import annotations

import re

import numpy as np

WORDS_PER_SHINGLE = 5
MIN_EVENTS = 16
_LYRIC_KINDS = (1, 5)            # meta events: text, lyric
_AT = ord("@")
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)
_WORD_MULT = np.uint64(0x100000001B3)
_KIND = np.uint64(0x6C797269)    # keeps lyric hashes apart from melodic codes
_WORD = re.compile(r"[^\W\d_]+")
_SPACE = ord(" ")
_SLASH, _BACKSLASH = ord("/"), ord("\\")  # Soft Karaoke: new line, new verse
# _WORD_MULT to the powers 0..63: a byte's weight by its place in a word.
_POWERS = np.cumprod(np.r_[np.uint64(1), np.full(63, _WORD_MULT, np.uint64)], dtype=np.uint64)


def lyric_texts(data: bytes) -> list[str]:
    """The text of each kind of lyric-bearing event in a MIDI file's bytes, in file order.

    Events of one kind are joined as syllables when they carry their own word breaks
    (a leading space, ``/`` or ``\\``, or a trailing space, as karaoke files do), else with
    a space between events. A ``-`` ending a syllable joins it to the next.

    Returns:
        One string per kind (text, lyric) with at least ``MIN_EVENTS`` events.
    """
    arr = np.frombuffer(data, np.uint8)
    hit = np.flatnonzero(arr[:-3] == 0xFF)
    kind = arr[hit + 1]
    # Most files have no lyrics: too few events of either kind, and nothing more to do.
    if max(np.count_nonzero(kind == 1), np.count_nonzero(kind == 5)) < MIN_EVENTS:
        return []
    length = arr[hit + 2].astype(np.int64)
    ok = ((kind == 1) | (kind == 5)) & (length > 0) & (length < 0x80)
    ok &= hit + 3 + length <= len(arr)
    hit, kind, length = hit[ok], kind[ok], length[ok]
    start = hit + 3
    ok = arr[start] != _AT
    texts = []
    for k in _LYRIC_KINDS:
        sel = ok & (kind == k)
        if sel.sum() < MIN_EVENTS:
            continue
        first, n = start[sel], length[sel]
        last = arr[first + n - 1]
        lead = arr[first]
        spaced = (lead == _SPACE) | (lead == _SLASH) | (lead == _BACKSLASH) | (last == _SPACE)
        gap = 0 if spaced.mean() >= 0.3 else 1
        # Every event's bytes, one after another (and a space after each, with gap 1).
        size = n + gap
        at = np.arange(size.sum()) - np.repeat(np.cumsum(size) - size, size)
        text = arr[np.minimum(np.repeat(first, size) + at, len(arr) - 1)]
        if gap:
            text = np.where(at == np.repeat(n, size), np.uint8(_SPACE), text)
        texts.append(re.sub(r"-\s*", "", text.tobytes().decode("latin-1")))
    return texts


def lyric_shingles(data: bytes) -> np.ndarray:
    """Hashes of every run of ``WORDS_PER_SHINGLE`` consecutive words a file sings.

    Words are lower-cased runs of letters (apostrophes dropped, so "don't" is "dont").

    Returns:
        uint32 [K]: sorted, unique hashes (none for a file without lyrics).
    """
    found = []
    n = WORDS_PER_SHINGLE
    for text in lyric_texts(data):
        word = hash_words(_WORD.findall(text.replace("'", "").lower()))
        k = len(word) - n + 1
        if k < 1:
            continue
        code = np.full(k, _KIND, np.uint64)
        for i in range(n):
            code = code * _WORD_MULT + word[i : i + k]
        found.append(((code * _HASH_MULT) >> np.uint64(32)).astype(np.uint32))
    if not found:
        return np.zeros(0, np.uint32)
    found = np.concatenate(found)
    found.sort()
    return unique_sorted(found)


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """The distinct values of a sorted array, in order (np.unique without its sort)."""
    if len(values) < 2:
        return values
    keep = np.empty(len(values), bool)
    keep[0] = True
    np.not_equal(values[1:], values[:-1], out=keep[1:])
    return values[keep]


def hash_words(words: list[str]) -> np.ndarray:
    """Each word's stable 64-bit hash (a polynomial over its UTF-8 bytes), the same on
    every machine and in every process.

    Returns:
        uint64 [len(words)].
    """
    if not words:
        return np.zeros(0, np.uint64)
    raw = np.frombuffer(" ".join(words).encode(), np.uint8).astype(np.uint64)
    breaks = np.flatnonzero(raw == _SPACE)
    raw[breaks] = 0                              # the spaces between words weigh nothing
    begin = np.r_[0, breaks + 1]
    at = np.arange(len(raw)) - np.repeat(begin, np.diff(np.r_[begin, len(raw)]))
    # A word's bytes, each times _WORD_MULT to its place in the word, summed (mod 2**64).
    weight = _POWERS[np.minimum(at, len(_POWERS) - 1)]
    return np.add.reduceat(raw * weight, begin) + _KIND

