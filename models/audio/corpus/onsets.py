"""The corpus's timestamp task (issue 25 step 3): event onsets in HEAR's event format, built from held-out clips.

After DCASE 2016 task 2 (HEAR 2021's `dcase2016_task2`: isolated sound events mixed into background noise at
event-to-background ratios of -6, 0 and +6 dB, scored by onset F-measure within +-200 ms), each mixture is
`MIXTURE_S` of pink noise with `EVENTS_PER_MIXTURE` events that do not overlap, at known onsets:

- the events are held-out clips of the corpus, cut to their sound (from the first to the last sample within
  40 dB of the clip's peak, at most `MAX_EVENT_S`, faded out over 20 ms where cut): a spoken word ("speech"), an
  instrument note ("note") or a desktop sound ("effect");
- the train mixtures take their events from the probes' training sources (the held-out voices, programs and
  theme that train every other task's probe), the test mixtures from the test sources: no test event's voice,
  instrument or package is heard in training, by the embedders or by the probe;
- each event is scaled to the same RMS over its sound, give or take a uniform +-3 dB, and the noise to the
  mixture's event-to-background ratio; a mixture whose peak would pass 0.99 is scaled down whole.

Labels (TASK_DIR/train.json, test.json): each event's label, start and end in milliseconds; the audio in
TASK_DIR/32000/<split>/; each mixture's event-to-background ratio in TASK_DIR/RATIOS (file -> dB, beside the
HEAR files: the evaluation reports the F-measure per ratio from it). `models.audio.user_data --format hear`
reads it as any HEAR event task; its frame-level probe and onset F-measure (`evaluate_events`) score it.

    python -m models.audio.corpus onsets --corpus DIR     # adds the task to a corpus `build` wrote
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from models.audio.corpus import held_out
from models.audio.corpus.clips import ONSET_DB, read_mono, write_clip
from models.audio.data import SAMPLE_RATE

TASK = "onset_unseen_sources"
MIXTURE_S = 10.0
MIXTURES = {"train": 80, "test": 60}
EVENTS_PER_MIXTURE = (3, 5)  # inclusive
FIRST_ONSET_S = (0.3, 1.0)  # where the first event may start
GAP_S = (0.2, 1.0)  # silence (noise only) between one event's end and the next onset
MAX_EVENT_S = 2.0
FADE_S = 0.02
EVENT_RMS = 0.05
EVENT_GAIN_DB = 3.0  # each event's level, uniform within +- this around EVENT_RMS
EBR_DB = (-6.0, 0.0, 6.0)  # DCASE 2016 task 2's event-to-background ratios
PEAK = 0.99
RATIOS = "mixture_ratios.json"
# label -> (corpus source, the task whose probe split says which held-out clips train and which test)
LABELS = {"speech": ("speech", "word_unseen_voice"), "note": ("notes", "family_unseen_instrument"),
          "effect": ("events", "event_kind_unseen_package")}
DESCRIPTION = ("event onsets (speech, note, effect) in pink noise at -6/0/+6 dB; train mixtures from the probes' "
               "training voices, programs and theme, test mixtures from the test ones")


def sound_part(samples: np.ndarray, rate: int = SAMPLE_RATE) -> np.ndarray:
    """The clip from the first to the last sample within 40 dB of its peak, at most MAX_EVENT_S (faded out
    over FADE_S where cut); empty for a silent clip."""
    magnitude = np.abs(samples)
    if magnitude.size == 0 or magnitude.max() <= 0:
        return np.zeros(0, dtype=np.float32)
    loud = np.flatnonzero(magnitude >= magnitude.max() * 10 ** (ONSET_DB / 20))
    part = samples[loud[0]:loud[-1] + 1].astype(np.float32)
    limit = round(MAX_EVENT_S * rate)
    if part.size > limit:
        part = part[:limit].copy()
        fade = round(FADE_S * rate)
        part[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return part


def pink_noise(rng: np.random.Generator, length: int) -> np.ndarray:
    """Unit-RMS noise with power falling as 1/f (white noise shaped in the frequency domain)."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=length)
    return noise / np.sqrt(np.mean(noise ** 2))


def mixture(rng: np.random.Generator, pools: dict[str, list[np.ndarray]],
            rate: int = SAMPLE_RATE) -> tuple[np.ndarray, list[dict[str, Any]], float]:
    """(audio, events with label / start / end in ms, the event-to-background ratio in dB)."""
    length = round(MIXTURE_S * rate)
    audio = np.zeros(length)
    events: list[dict[str, Any]] = []
    position = rng.uniform(*FIRST_ONSET_S)
    labels = sorted(pools)
    for _ in range(rng.integers(EVENTS_PER_MIXTURE[0], EVENTS_PER_MIXTURE[1] + 1)):
        label = labels[rng.integers(len(labels))]
        sound = pools[label][rng.integers(len(pools[label]))]
        start = round(position * rate)
        if start + sound.size > length:
            break
        gain = EVENT_RMS * 10 ** (rng.uniform(-EVENT_GAIN_DB, EVENT_GAIN_DB) / 20) / np.sqrt(np.mean(sound ** 2))
        audio[start:start + sound.size] += gain * sound
        events.append({"label": label, "start": round(1000 * start / rate, 3),
                       "end": round(1000 * (start + sound.size) / rate, 3)})
        position = (start + sound.size) / rate + rng.uniform(*GAP_S)
    ratio = float(EBR_DB[rng.integers(len(EBR_DB))])
    audio += pink_noise(rng, length) * EVENT_RMS / 10 ** (ratio / 20)
    peak = float(np.max(np.abs(audio)))
    if peak > PEAK:
        audio *= PEAK / peak
    return audio.astype(np.float32), events, ratio


def event_pools(corpus: Path, records: list[dict[str, Any]], held: held_out.HeldOut) -> dict[str, dict[str, list]]:
    """split -> label -> the sounds of the held-out clips on that side of their task's probe split, for the labels
    whose sources give sounds on both sides (a corpus built from fewer sources has fewer labels; none when
    fewer than two are left)."""
    pools: dict[str, dict[str, list[np.ndarray]]] = {"train": {}, "test": {}}
    for label, (source, task) in LABELS.items():
        for record in records:
            if record["source"] != source or record["split"] != "held_out":
                continue
            side = held_out.probe_split(task, record["labels"], held)
            sound = sound_part(read_mono(corpus / record["file"])) if side else np.zeros(0)
            if side and sound.size:
                pools[side].setdefault(label, []).append(sound)
    both = set(pools["train"]) & set(pools["test"])
    if len(both) < 2:  # a probe needs two labels (models/audio/hear_task.py)
        both = set()
    return {side: {label: sounds for label, sounds in by_label.items() if label in both}
            for side, by_label in pools.items()}


def write_task(corpus: Path, records: list[dict[str, Any]], held: held_out.HeldOut, seed: int, tasks_dir: str,
               mixtures: dict[str, int] = MIXTURES) -> dict[str, Any] | None:
    """Writes the task folder (replacing an earlier one); returns its manifest entry, None when fewer than two
    labels have held-out sounds on both sides."""
    folder = corpus / tasks_dir / TASK
    shutil.rmtree(folder, ignore_errors=True)
    pools = event_pools(corpus, records, held)
    if not pools["train"]:
        return None
    rng = np.random.default_rng([seed, 2016])
    summary: dict[str, Any] = {"folder": f"{tasks_dir}/{TASK}", "embedding_type": "event", "description": DESCRIPTION,
                               "labels": sorted(pools["train"]), "mixture_s": MIXTURE_S}
    by_file: dict[str, float] = {}
    for split, count in mixtures.items():
        labels: dict[str, list[dict[str, Any]]] = {}
        ratios = []
        for i in range(count):
            audio, events, ratio = mixture(rng, pools[split])
            name = f"{split}_{i:03d}.wav"
            write_clip(folder / str(SAMPLE_RATE) / split / name, audio)
            labels[name] = events
            ratios.append(ratio)
            by_file[name] = ratio
        (folder / f"{split}.json").write_text(json.dumps(labels, indent=1) + "\n")
        summary[split] = {"mixtures": count, "events": sum(len(e) for e in labels.values()),
                          "sounds": {label: len(sounds) for label, sounds in sorted(pools[split].items())},
                          "mixtures_by_ratio_db": {f"{r:+g}": ratios.count(r) for r in EBR_DB}}
    metadata = {"task_name": TASK, "version": "1", "embedding_type": "event", "prediction_type": "multilabel",
                "mode": "train/valid/test", "split_names": list(mixtures), "sample_rate": SAMPLE_RATE,
                "label_vocabulary": summary["labels"], "evaluation": ["event_onset_200ms_fms"],
                "description": DESCRIPTION}
    (folder / "task_metadata.json").write_text(json.dumps(metadata, indent=1) + "\n")
    (folder / RATIOS).write_text(json.dumps(by_file, indent=1) + "\n")
    return summary
