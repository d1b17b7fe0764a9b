"""The frame-rate rule of i3d.video.timing against its plain statement."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from i3d.video.timing import FpsResampler, as_rate, output_frame_count, round_half_away
from tests.video.helpers import reference_picks


def resample(times: list[float], end: float, fps: float) -> list[int]:
    rate = as_rate(fps)
    start = Fraction(times[0]).limit_denominator()
    count = output_frame_count(start, Fraction(end).limit_denominator(), rate)
    resampler: FpsResampler[int] = FpsResampler(rate, start, count)
    out: list[int] = []
    for i, t in enumerate(times):
        out += resampler.push(i, Fraction(t).limit_denominator())
    return out + resampler.finish()


def test_rounding_is_half_away_from_zero():
    assert [round_half_away(Fraction(x, 2)) for x in (-3, -1, 1, 3, 5)] == [-2, -1, 1, 2, 3]


def test_rates_typed_as_floats_become_exact_fractions():
    assert as_rate(29.97) == Fraction(2997, 100)
    assert as_rate(Fraction(30000, 1001)) == Fraction(30000, 1001)
    with pytest.raises(ValueError):
        as_rate(0)


def test_30_to_25_fps_drops_every_sixth_frame():
    times = [i / 30 for i in range(300)]
    picks = resample(times, 10.0, 25)
    assert len(picks) == 250
    assert picks == reference_picks(times, 10.0, 25)
    # 6 source frames span 5 output frames: one in six is dropped
    assert len(set(picks)) == 250 and picks[:6] == [0, 1, 2, 4, 5, 6]


def test_24_to_25_fps_repeats_one_frame_a_second():
    times = [i / 24 for i in range(48)]
    picks = resample(times, 2.0, 25)
    assert len(picks) == 50 and picks == reference_picks(times, 2.0, 25)
    assert len(set(picks)) == 48


def test_same_rate_is_the_identity_even_with_an_offset_start():
    times = [0.5 + i / 25 for i in range(40)]
    assert resample(times, 0.5 + 40 / 25, 25) == list(range(40))


def test_variable_rate():
    rng = np.random.default_rng(0)
    times = list(np.cumsum(rng.uniform(0.005, 0.15, 200)))
    end = times[-1] + 0.04
    picks = resample(times, end, 24)
    assert picks == reference_picks(times, end, 24)
    assert len(picks) == round((end - times[0]) * 24)


def test_a_frame_shorter_than_half_an_interval_still_gives_one_frame():
    assert resample([0.0], 0.01, 25) == [0]


def test_slots_the_stream_does_not_reach_repeat_its_last_frame():
    # A stream whose timestamps promise 1 s but whose frames stop at 0.2 s.
    rate = as_rate(25)
    resampler: FpsResampler[int] = FpsResampler(rate, Fraction(0), 25)
    out = []
    for i in range(5):
        out += resampler.push(i, Fraction(i, 25))
    out += resampler.finish()
    assert out == [0, 1, 2, 3] + [4] * 21


def test_slots_before_the_first_decoded_frame_show_it():
    resampler: FpsResampler[str] = FpsResampler(as_rate(10), Fraction(0), 4)
    out = resampler.push("b", Fraction(2, 10)) + resampler.push("c", Fraction(3, 10)) + resampler.finish()
    assert out == ["b", "b", "b", "c"]
