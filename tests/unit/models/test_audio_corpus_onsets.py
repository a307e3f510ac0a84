"""The corpus's timestamp task (models/audio/corpus/onsets.py): events cut to their sound, pink noise, mixtures
whose labels say where each event sits, train and test events from the two sides of the held-out sources, a
folder that reads as a HEAR event task; and the paired onset F-measure difference the reports print."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from models.audio.corpus import held_out, onsets
from models.audio.corpus.clips import write_clip
from models.audio.data import SAMPLE_RATE
from models.audio.hear_task import EVENT, read_task
from models.audio.user_data import paired_onset_difference

RATE = SAMPLE_RATE


def _tone(seconds: float, frequency: float = 440.0, level: float = 0.3) -> np.ndarray:
    return (level * np.sin(2 * np.pi * frequency * np.arange(round(seconds * RATE)) / RATE)).astype(np.float32)


def test_an_event_is_cut_to_its_sound_and_a_long_one_is_capped_with_a_fade():
    clip = np.concatenate([np.zeros(RATE // 5, np.float32), _tone(0.5), np.zeros(RATE // 5, np.float32)])
    part = onsets.sound_part(clip)
    assert abs(part.size - RATE // 2) <= RATE // 440 + 1  # the tone's own zero crossings may fall at its ends
    long = onsets.sound_part(_tone(3.0))
    assert long.size == round(onsets.MAX_EVENT_S * RATE)
    assert abs(long[-1]) < 1e-6 and np.abs(long[: RATE // 2]).max() > 0.29  # faded out at the cut only
    assert onsets.sound_part(np.zeros(100, np.float32)).size == 0


def test_pink_noise_has_unit_rms_and_power_falling_as_one_over_frequency():
    noise = onsets.pink_noise(np.random.default_rng(0), 10 * RATE)
    assert np.sqrt(np.mean(noise ** 2)) == pytest.approx(1.0)
    power = np.abs(np.fft.rfft(noise)) ** 2
    frequency = np.fft.rfftfreq(noise.size, 1 / RATE)

    def per_hertz(low: float, high: float) -> float:
        return float(power[(frequency >= low) & (frequency < high)].mean())

    assert 10 < per_hertz(100, 200) / per_hertz(1600, 3200) < 25  # 1/f: 16x from one band to the other


def test_mixture_events_do_not_overlap_and_sit_where_their_labels_say():
    pools = {"low": [_tone(0.4, 200)], "high": [_tone(0.7, 3000), _tone(0.3, 2500)]}
    seen_ratios = set()
    for seed in range(12):
        audio, events, ratio = onsets.mixture(np.random.default_rng(seed), pools)
        seen_ratios.add(ratio)
        assert audio.shape == (round(onsets.MIXTURE_S * RATE),) and np.isfinite(audio).all()
        assert np.abs(audio).max() <= onsets.PEAK + 1e-6
        assert onsets.EVENTS_PER_MIXTURE[0] <= len(events) <= onsets.EVENTS_PER_MIXTURE[1]
        assert events[0]["start"] >= 1000 * onsets.FIRST_ONSET_S[0]
        for before, after in itertools.pairwise(events):
            assert after["start"] - before["end"] >= 1000 * onsets.GAP_S[0] - 0.1
        for event in events:
            assert event["end"] <= 1000 * onsets.MIXTURE_S
            start, end = round(event["start"] * RATE / 1000), round(event["end"] * RATE / 1000)
            spectrum = np.abs(np.fft.rfft(audio[start:end]))
            frequency = np.fft.rfftfreq(end - start, 1 / RATE)
            above = frequency >= 100  # pink noise's power lies at the lowest frequencies
            peak = frequency[above][np.argmax(spectrum[above])]
            assert (peak < 1000) == (event["label"] == "low")  # the labelled event is the one there
    assert seen_ratios == set(onsets.EBR_DB)


def _fake_corpus(root: Path) -> tuple[list[dict], held_out.HeldOut]:
    """Held-out clips of each source: the probes' training side sounds 0.3 s long, the test side 0.6 s."""
    held = held_out.HeldOut(voices=("v-train", "v-test"), words=(), programs=(0, 1), event_packages=("pa", "pb"))
    records = []
    for side, seconds in (("train", 0.3), ("test", 0.6)):
        for source, labels in (("speech", {"voice": f"v-{side}", "word": "yes"}),
                               ("notes", {"program": 0 if side == "train" else 1}),
                               ("events", {"package": "pa" if side == "train" else "pb"})):
            for k in range(3):
                file = f"{source}/{side}{k}.wav"
                clip = np.concatenate([_tone(seconds, 300 + 100 * k), np.zeros(RATE // 2, np.float32)])
                write_clip(root / file, clip)
                records.append({"file": file, "source": source, "split": "held_out", "labels": labels})
    records.append({"file": "speech/train0.wav", "source": "speech", "split": "pretrain",  # never an event
                    "labels": {"voice": "v-other", "word": "yes"}})
    return records, held


def test_train_and_test_events_come_from_their_own_sources_and_the_folder_reads_as_a_hear_event_task(tmp_path):
    records, held = _fake_corpus(tmp_path)
    entry = onsets.write_task(tmp_path, records, held, seed=0, tasks_dir="tasks", mixtures={"train": 5, "test": 4})
    assert entry is not None and entry["labels"] == ["effect", "note", "speech"]
    assert entry["train"]["sounds"] == {"effect": 3, "note": 3, "speech": 3} == entry["test"]["sounds"]
    folder = tmp_path / entry["folder"]
    for split, seconds in (("train", 0.3), ("test", 0.6)):
        labels = json.loads((folder / f"{split}.json").read_text())
        lengths = [e["end"] - e["start"] for events in labels.values() for e in events]
        assert len(lengths) == entry[split]["events"] and entry[split]["mixtures"] == len(labels)
        assert all(abs(length - 1000 * seconds) < 5 for length in lengths), split  # only its own side's sounds
    ratios = json.loads((folder / onsets.RATIOS).read_text())
    assert set(ratios) == {f"{split}_{i:03d}.wav" for split, n in (("train", 5), ("test", 4)) for i in range(n)}
    assert set(ratios.values()) <= set(onsets.EBR_DB)
    task = read_task(folder)  # the ratios file beside the HEAR files does not disturb the reader
    assert task.embedding_type == EVENT and task.vocabulary == ("effect", "note", "speech")
    assert sum(len(c.events) for c in task.clips) == entry["train"]["events"] + entry["test"]["events"]
    written = {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    again = onsets.write_task(tmp_path, records, held, seed=0, tasks_dir="tasks", mixtures={"train": 5, "test": 4})
    assert again == entry and {p: p.read_bytes() for p in written} == written  # seeded: the same bytes


def test_fewer_than_two_labels_with_sounds_on_both_sides_give_no_task(tmp_path):
    records, held = _fake_corpus(tmp_path)
    one_sided = [r for r in records if r["source"] == "speech" or r["labels"].get("program") == 0]
    assert onsets.write_task(tmp_path, one_sided, held, seed=0, tasks_dir="tasks") is None  # notes: train side only
    assert not (tmp_path / "tasks" / onsets.TASK).exists()


def test_the_paired_difference_resamples_the_same_clips_for_both():
    same = {"per_clip_counts": [[1, 2, 2], [2, 2, 3], [0, 1, 1]]}
    assert paired_onset_difference(same, same, seed=0) == {"difference": 0.0, "interval_95": [0.0, 0.0]}
    better = {"per_clip_counts": [[2, 2, 2], [2, 2, 2], [1, 1, 1]]}
    result = paired_onset_difference(better, same, seed=0)
    assert result["difference"] == pytest.approx(1.0 - 2 * 3 / 11, abs=1e-4)  # F 1.0 vs 2*3/(5+6)
    assert 0.0 < result["interval_95"][0] <= result["difference"] <= result["interval_95"][1]


def test_the_f_measure_per_ratio_pools_the_mixtures_of_each_ratio():
    counts = [[2, 3, 2], [1, 2, 2], [0, 2, 1], [3, 3, 3]]  # hits, reference onsets, estimated onsets
    files = ["a.wav", "b.wav", "c.wav", "d.wav"]
    ratios = {"a.wav": 6.0, "b.wav": -6.0, "c.wav": -6.0, "d.wav": 0.0}
    from models.audio.corpus.evaluate import f_by_ratio

    assert f_by_ratio(counts, files, ratios) == {"-6": round(2 * 1 / 7, 4), "+0": 1.0, "+6": 0.8}
