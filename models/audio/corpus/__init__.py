"""A corpus of real recordings and renderings obtainable on this machine (issue 25): speech from espeak-ng,
single instrument notes from a General MIDI sound font through fluidsynth, recorded sound events from
Debian's sound-theme and game-sound packages; a manifest with package versions and licences; held-out
voices, words, instruments and packages for evaluation.

    python -m models.audio.corpus build --out artifacts/audio-corpus [--max-clips N] [--seed S]
"""

from models.audio.corpus.builder import MANIFEST, SOURCES, build
from models.audio.corpus.held_out import TASKS, HeldOut

__all__ = ["MANIFEST", "SOURCES", "TASKS", "HeldOut", "build"]
