"""The NUTS kernel (bayescale.nuts) against targets with known answers.

Tolerances: a posterior mean is off by its Monte Carlo standard error
sd / sqrt(ESS); we allow 4 such errors (a false failure about 1 in 16,000 per
check at a fixed seed, so the checks are not tuned to pass).  A variance estimate
has relative standard error ~ sqrt(2 / ESS) for near-Gaussian draws; again 4x.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from conftest import check_correlated_gaussian, check_gamma_quantiles

from bayescale.nuts import advance, initial_state, sample_chain, warmup_schedule
from bayescale.priors import parse_prior


def run(logp, d, chains=4, warmup=500, draws=1000, seed=0, dense=True, target_accept=0.8, max_depth=10):
    grad = jax.value_and_grad(logp)

    def one(key, q0):
        return sample_chain(key, q0, grad, warmup=warmup, draws=draws, target_accept=target_accept,
                            max_depth=max_depth, dense=dense)

    keys = jax.random.split(jax.random.PRNGKey(seed), chains)
    q0 = jax.random.uniform(jax.random.PRNGKey(seed + 1), (chains, d), minval=-2, maxval=2)
    positions, stats, step, minv = jax.jit(jax.vmap(one))(keys, q0)
    return np.asarray(positions, float), {k: np.asarray(v) for k, v in stats.items()}, np.asarray(minv)


def test_warmup_schedule_is_stans_for_1000_iterations():
    collect, update = warmup_schedule(1000)
    ends = np.flatnonzero(update) + 1
    assert ends.tolist() == [100, 150, 250, 450, 950]        # 75 + 25, +50, +100, +200, +500
    assert collect[:75].sum() == 0 and collect[75:950].all() and collect[950:].sum() == 0


def test_warmup_schedule_short_and_tiny():
    collect, update = warmup_schedule(100)                   # 15 / 75 / 10 split, as Stan does
    assert np.flatnonzero(update).tolist() == [89] and collect[15:90].all() and not collect[:15].any()
    collect, update = warmup_schedule(15)                    # too short for a metric: step size only
    assert not collect.any() and not update.any()


def test_correlated_badly_scaled_gaussian():
    check_correlated_gaussian(lambda logp, d: run(logp, d))


def test_skewed_target_matches_its_quantiles():
    check_gamma_quantiles(lambda logp, d: run(logp, d, dense=False))


def test_tree_depth_is_capped_and_reported():
    # a badly scaled Gaussian without metric adaptation (warm-up too short) needs long trajectories
    def logp(q):
        return -0.5 * (q[0] ** 2 + (q[1] / 1000.0) ** 2)

    _, stats, _ = run(logp, 2, warmup=15, draws=50, max_depth=3)
    assert stats["tree_depth"].max() == 3
    assert stats["n_steps"].max() <= 2 ** 3


def test_same_seed_same_draws_other_seed_other_draws():
    def logp(q):
        return -0.5 * jnp.sum(q ** 2)

    a, _, _ = run(logp, 2, chains=2, warmup=50, draws=50, seed=3)
    b, _, _ = run(logp, 2, chains=2, warmup=50, draws=50, seed=3)
    c, _, _ = run(logp, 2, chains=2, warmup=50, draws=50, seed=4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_a_chain_run_in_pieces_equals_the_chain_run_in_one_go():
    # the sampler calls its program ~20 times per fit; pieces must not change the draws.  The last
    # piece runs past the end (3 x 40 > 100): those iterations must leave the state alone.
    def logp(q):
        return -0.5 * jnp.sum((q / jnp.array([1.0, 10.0])) ** 2)

    grad = jax.value_and_grad(logp)
    key, q0 = jax.random.PRNGKey(7), jnp.array([1.5, -3.0])
    settings = dict(warmup=60, draws=40, target_accept=0.8, max_depth=10, dense=True)
    whole, whole_stats, _, _ = jax.jit(lambda k, q: sample_chain(k, q, grad, **settings))(key, q0)

    piece = jax.jit(lambda state, start: advance(state, key, start, grad, iterations=40, **settings))
    state = initial_state(np.asarray(q0))
    parts = []
    for start in (0, 40, 80):
        state, (positions, stats) = piece(state, np.int32(start))
        parts.append((np.asarray(positions), np.asarray(stats["n_steps"])))
    positions = np.concatenate([p for p, _ in parts])
    steps = np.concatenate([s for _, s in parts])
    assert np.array_equal(positions[60:100], np.asarray(whole))
    assert np.array_equal(steps[60:100], np.asarray(whole_stats["n_steps"]))
    assert (steps[100:] == 0).all() and np.array_equal(np.asarray(state["q"]), positions[99])


@pytest.mark.parametrize("text, support", [
    ("Uniform(0.05, 1)", constraints.interval(0.05, 1.0)),
    ("HalfNormal(0.1)", constraints.positive),
    ("LogNormal(0, 1)", constraints.positive),
    ("Beta(2, 3)", constraints.unit_interval),
    ("Normal(0, 1)", constraints.real),
    ("TruncatedNormal(0, 1, 0.5, 3)", constraints.interval(0.5, 3.0)),
])
def test_numpy_bijections_match_numpyros(text, support):
    prior = parse_prior(text)
    z = np.linspace(-4, 4, 17)
    expected = np.asarray(biject_to(support)(jnp.asarray(z, jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)))
    assert np.allclose(prior.constrain(z), expected, rtol=1e-5, atol=1e-6)
    assert np.allclose(prior.unconstrain(prior.constrain(z)), z, atol=1e-6)
    assert np.allclose(biject_to(prior.dist().support)(jnp.asarray(z, jnp.float32)), expected, rtol=1e-5)


@pytest.mark.filterwarnings("ignore::bayescale.ConvergenceWarning")   # 100 iterations: too short on purpose
def test_progress_bar_reaches_the_end_on_every_fit(epoch_runs, monkeypatch):
    """On a terminal: a note while compiling, then one bar redrawn in place, with an ETA, up to 100/100."""
    import io
    import re

    import bayescale

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for _ in range(2):       # the bar belongs to a cached program: it must start again at 0
        err = Terminal()
        monkeypatch.setattr("sys.stderr", err)
        bayescale.fit(epoch_runs, law="chinchilla", chains=2, warmup=60, draws=40, progress=True,
                      retry=False)
        frames = [f for f in err.getvalue().split("\r") if f.startswith("chinchilla, NUTS")]
        assert frames[0].startswith("chinchilla, NUTS 2 chains: compiling the sampler")     # before the bar
        counts = [int(re.search(r"\] (\d+)/100", f).group(1)) for f in frames[1:]]
        assert counts[0] < 100 and counts == sorted(counts) and counts[-1] == 100
        assert "ETA" in frames[1] and frames[-1].rstrip().endswith(" s")
        assert frames[-1].startswith("chinchilla, NUTS 2 chains [" + "#" * 30 + "] 100/100")
        assert err.getvalue().endswith("\n") and err.getvalue().count("\n") == 1
        assert len(frames[1]) >= len(frames[0])            # the bar covers the note


@pytest.mark.filterwarnings("ignore::bayescale.ConvergenceWarning")
def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(epoch_runs, capfd):
    """In a pipe or a log (stderr not a terminal), the default progress is whole lines, no carriage returns."""
    import bayescale

    bayescale.fit(epoch_runs, law="chinchilla", chains=2, warmup=60, draws=40, retry=False)
    err = capfd.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0] == "chinchilla, NUTS 2 chains: compiling the sampler (once per law and data size)"
    assert re.fullmatch(r"chinchilla, NUTS 2 chains: 100/100 iterations in \d+\.\d s", lines[1]), lines
    bayescale.fit(epoch_runs, law="chinchilla", chains=2, warmup=60, draws=40, progress=False, retry=False)
    assert capfd.readouterr().err == ""


@pytest.mark.slow
def test_weakly_identified_fit_passes_the_gate_across_seeds():
    """The demo's backtest fit (Chinchilla on the 32 smallest-compute pilot runs), with the demo's
    settings, passes the gate over 4 seeds.  The posterior identifies B, E and beta weakly: low E
    pairs with small B and beta in a narrow neck that a chain sometimes enters and stays in for a
    hundred draws, which is what costs tail ESS.  Measured over seeds 0-11: at the demo's target
    acceptance 0.95 every fit passes (tail ESS min 637, median ~2000, no divergences); at 0.9, 2 of 8
    fits had a tail ESS below the gate's 400 (and 1 of 8 with XLA's default loop compilation, whose
    rounding gives other trajectories), which is why the demo uses 0.95."""
    import warnings
    from importlib import resources

    import pandas as pd

    import bayescale
    from bayescale.cli.demo import FULL

    runs = pd.read_csv(resources.files("bayescale.data") / "pilot_chinchilla.csv")
    runs = runs[runs["C"] < runs["C"].quantile(0.8)]
    for seed in range(4):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bayescale.ConvergenceWarning)
            fit = bayescale.fit(runs, law="chinchilla", progress=False, **{**FULL, "seed": seed})
        d = fit.diagnostics
        assert d.passed, (seed, str(d))
