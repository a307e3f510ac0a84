"""A Standard MIDI File (format 0, one track) holding one note on one program: what the corpus hands to
fluidsynth to render an NSynth-style single note. The format is the MIDI 1.0 "Standard MIDI Files"
specification: a header chunk, one track chunk of delta-timed events, variable-length quantities."""

from __future__ import annotations

import struct

TICKS_PER_QUARTER = 480
MICROSECONDS_PER_QUARTER = 500_000  # 120 bpm: one tick is 1/960 s
TICKS_PER_SECOND = TICKS_PER_QUARTER * 1_000_000 // MICROSECONDS_PER_QUARTER


def variable_length(value: int) -> bytes:
    """A delta time as the SMF's variable-length quantity: 7 bits per byte, high bit set on all but the last."""
    if value < 0:
        raise ValueError(f"a delta time cannot be negative, got {value}")
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(groups))


def _check(name: str, value: int, top: int) -> None:
    if not 0 <= value <= top:
        raise ValueError(f"{name} must be in 0..{top}, got {value}")


def single_note(program: int, note: int, velocity: int, held_seconds: float, tail_seconds: float,
                channel: int = 0) -> bytes:
    """The file's bytes: program change, note on at 0, note off after `held_seconds`, end of track after
    `tail_seconds` more (so the synthesiser renders the release)."""
    for name, value, top in (("program", program, 127), ("note", note, 127), ("velocity", velocity, 127),
                             ("channel", channel, 15)):
        _check(name, value, top)
    held, tail = round(held_seconds * TICKS_PER_SECOND), round(tail_seconds * TICKS_PER_SECOND)
    events = [
        (0, b"\xff\x51\x03" + MICROSECONDS_PER_QUARTER.to_bytes(3, "big")),  # set tempo
        (0, bytes([0xC0 | channel, program])),
        (0, bytes([0x90 | channel, note, velocity])),
        (held, bytes([0x80 | channel, note, 0])),
        (tail, b"\xff\x2f\x00"),  # end of track
    ]
    track = b"".join(variable_length(delta) + event for delta, event in events)
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER)
    return header + b"MTrk" + struct.pack(">I", len(track)) + track
