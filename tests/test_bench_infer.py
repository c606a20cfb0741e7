"""bench_infer's decode rate: codes over the timed decode only, and no absurd rate from timer noise."""

from __future__ import annotations

import sys

from helpers import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_infer  # noqa: E402  (a script module beside the benchmarks, not a package)


def test_decode_rate_is_the_median_over_the_decode_alone():
    # 99 codes after the first in 0.9, 1.0 and 0.8 s of decoding: 110, 99 and 123.75 codes/s.
    assert bench_infer.decode_rate([1.0, 1.1, 0.9], [0.1, 0.1, 0.1], 99) == 110.0


def test_a_prompt_pass_as_long_as_the_run_gives_no_rate_rather_than_an_absurd_one():
    """Noise once made the prompt pass outlast the run and reported 2.8e10 codes/s."""
    assert bench_infer.decode_rate([0.100, 0.100, 0.100], [0.1000001, 0.11, 0.0999999], 99) is None
    assert bench_infer.decode_rate([1.0, 1.0, 1.0], [0.1, 0.95, 0.1], 99) == 110.0  # one noisy pair left out
