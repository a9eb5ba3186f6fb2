"""Large data (issue 10): a fit of 10^5 runs converges in the leapfrog steps a small one takes.

With 10^5 runs the posterior standard deviations are ~1e-4 in the unconstrained coordinates.  The
chains used to start at the optimum moved by a fixed Uniform(-0.1, 0.1), ~1000 sd away: one chain
of two spent the warm-up in that transient, adapted a step size of 0.015 and ran into tree depth 10
on every draw (983 leapfrog steps per draw, R-hat 2.2) while the other took 6.  The starts are now
spread over +-3 posterior sd (the optimum's Gauss-Newton estimate).  The benchmark
``benchmarks/large_data.py`` prints the figures at the default settings.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import bayescale

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


@pytest.mark.slow
def test_a_fit_of_100000_runs_takes_as_few_steps_per_draw_as_a_small_one():
    from large_data import simulate

    runs = simulate(100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
        fit = bayescale.fit(runs, law="chinchilla", chains=2, warmup=400, draws=200, retry=False, progress=False)
    steps = fit.idata.sample_stats["n_steps"].values
    assert steps.mean(axis=1).max() < 15, steps.mean(axis=1)        # a 1000-run fit takes ~6
    alpha = fit.idata.posterior["alpha"].values
    gap = abs(alpha[0].mean() - alpha[1].mean())
    assert gap < 4 * alpha.std() / np.sqrt(50), (gap, alpha.std())  # the two chains sample one posterior
    assert np.median(alpha) == pytest.approx(0.348, abs=0.01)       # TRUTH's alpha (Epoch's published fit)
