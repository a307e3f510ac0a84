"""Window placement shared by the service and the HEAR module."""

import numpy as np

from infersuite.services.audio import windows


def test_scene_windows_tile_the_clip_with_the_last_flush_at_the_end() -> None:
    assert windows.scene_starts(100, 40) == [0, 40, 60]
    assert windows.scene_starts(80, 40) == [0, 40]
    assert windows.scene_starts(10, 40) == [0]
    short = windows.scene_windows(np.ones(10, np.float32), 40)
    assert short.shape == (1, 40) and short[0, :10].sum() == 10 and short[0, 10:].sum() == 0


def test_timestamps_follow_hear_conventions() -> None:
    assert windows.timestamp_count(32000, 32000, 50.0) == 21  # 0, 50, ..., 1000 ms
    assert windows.timestamp_count(31999, 32000, 50.0) == 20
    np.testing.assert_array_equal(windows.timestamps_ms(3, 25.0, first=2), [50.0, 75.0, 100.0])


def test_centred_windows_zero_pad_outside_the_audio_and_respect_the_offset() -> None:
    audio = np.arange(1, 11, dtype=np.float32)  # global samples 100..109 hold 1..10
    out = windows.centred_windows(audio, 100, np.array([100, 105]), 4)
    np.testing.assert_array_equal(out, [[0, 0, 1, 2], [4, 5, 6, 7]])


def test_timestamp_windows_hold_audio_only_in_their_central_part() -> None:
    audio = np.arange(1, 21, dtype=np.float32)
    out = windows.centred_windows(audio, 0, np.array([10]), 8, active=4)
    np.testing.assert_array_equal(out, [[0, 0, 9, 10, 11, 12, 0, 0]])
    full = windows.centred_windows(audio, 0, np.array([10]), 8, active=100)  # clamped to the window
    np.testing.assert_array_equal(full, [[7, 8, 9, 10, 11, 12, 13, 14]])
