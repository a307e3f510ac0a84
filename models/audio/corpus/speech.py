"""Spoken-command words from espeak-ng (Debian packages espeak-ng, espeak-ng-data): every word of a fixed
list in the style of the Speech Commands data set, spoken by many voices (a language's pronunciation
rules + a voice variant) at several speeds and pitches. The words are English spellings for every voice,
so a German or Polish voice speaks them with its own letter-to-sound rules: an accent, not a translation."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.audio.corpus.clips import fit_to_window, is_silent, read_mono, write_clip

PACKAGES = ("espeak-ng", "espeak-ng-data")
WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
         "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LANGUAGES = ("en", "en-us", "en-gb-scotland", "en-029", "de", "fr", "es", "it", "nl", "pt", "sv", "pl")
VARIANTS = ("m1", "f2", "m3", "f4", "m7", "f5", "klatt", "m2", "f1")
VARIANTS_PER_LANGUAGE = 3
SPEEDS_WPM = (150, 180, 210)  # espeak-ng -s; its default is 175
PITCHES = (30, 70)  # espeak-ng -p, 0..99; its default is 50
COMMAND = "espeak-ng -v {voice} -s {speed} -p {pitch} -w OUT.wav {word}"
TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Utterance:
    word: str
    language: str
    variant: str
    speed: int
    pitch: int

    @property
    def voice(self) -> str:
        return f"{self.language}+{self.variant}"

    @property
    def file(self) -> str:
        return f"speech/{self.voice}/{self.word}_s{self.speed}_p{self.pitch}.wav"

    def labels(self) -> dict[str, str | int]:
        return {"word": self.word, "voice": self.voice, "language": self.language, "variant": self.variant,
                "speed": self.speed, "pitch": self.pitch}

    def command(self, out: Path) -> list[str]:
        return ["espeak-ng", "-v", self.voice, "-s", str(self.speed), "-p", str(self.pitch), "-w", str(out),
                self.word]


def voices() -> list[tuple[str, str]]:
    """(language, variant) pairs: each language with VARIANTS_PER_LANGUAGE variants, rotating through VARIANTS
    so that every variant meets several languages."""
    return [(language, VARIANTS[(index * VARIANTS_PER_LANGUAGE + k) % len(VARIANTS)])
            for index, language in enumerate(LANGUAGES) for k in range(VARIANTS_PER_LANGUAGE)]


def plan() -> list[Utterance]:
    return [Utterance(word, language, variant, speed, pitch) for language, variant in voices()
            for word in WORDS for speed in SPEEDS_WPM for pitch in PITCHES]


def render(utterance: Utterance, out: Path) -> float | None:
    """Speaks the word and writes the fitted clip to `out`; the duration, or None when espeak-ng said nothing."""
    with tempfile.TemporaryDirectory(prefix="espeak-") as scratch:
        raw = Path(scratch) / "raw.wav"
        subprocess.run(utterance.command(raw), check=True, capture_output=True, timeout=TIMEOUT_SECONDS)
        samples = read_mono(raw)
    if is_silent(samples):
        return None
    return write_clip(out, fit_to_window(np.asarray(samples)))
