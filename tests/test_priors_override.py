"""Priors are a user's choice on every law; a failed gate is refitted once; fixed reference points."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

import bayescale
from bayescale.cards import with_priors
from bayescale.data import pilot_chinchilla
from bayescale.errors import BayescaleError, CardError, ConvergenceWarning, FitRetried, PriorError
from bayescale.fitting import retry_settings

QUICK = dict(chains=2, warmup=300, draws=300, seed=3, progress=False, retry=False)   # short: never retried


def test_override_replaces_one_prior_and_is_recorded_in_the_card_text():
    law = with_priors(bayescale.load_law("chinchilla"), {"alpha": "Uniform(0.4, 0.45)", "sigma": "HalfNormal(0.05)"})
    priors = {p.name: str(p.prior) for p in law.params}
    assert priors["alpha"] == "Uniform(0.4, 0.45)" and priors["beta"] == "Uniform(0, 1)"
    assert str(law.sigma_prior) == "HalfNormal(0.05)"
    assert law.overridden == (("alpha", "Uniform(0, 1)", "Uniform(0.4, 0.45)"),
                              ("sigma", "HalfNormal(0.1)", "HalfNormal(0.05)"))
    assert law.hash != bayescale.load_law("chinchilla").hash
    # the text round-trips (a saved fit reloads the same priors), and a second override merges
    again = bayescale.cards.law_from_text(law.text)
    assert again.overridden == law.overridden
    merged = with_priors(law, {"alpha": "Uniform(0.3, 0.5)"})
    assert dict((n, u) for n, _, u in merged.overridden) == {"alpha": "Uniform(0.3, 0.5)", "sigma": "HalfNormal(0.05)"}
    assert merged.text.count("[prior_overrides]") == 1


@pytest.mark.parametrize("priors, error, words", [
    ({"zeta": "Uniform(0, 1)"}, CardError, ["no parameter 'zeta'", "L_c, f_E, g_N, alpha, beta and sigma"]),
    ({"E": "LogNormal(0, 1)"}, CardError, ["'E' is derived", "E = f_E * L_c"]),
    ({"alpha": "Uniform(1, 0)"}, PriorError, ["alpha", "low < high"]),
    ({"alpha": 0.3}, CardError, ["prior for 'alpha' must be a string"]),
])
def test_bad_overrides_are_clear_errors(priors, error, words):
    with pytest.raises(error) as info:
        bayescale.fit(pilot_chinchilla(), law="chinchilla", priors=priors)
    for w in words:
        assert w in str(info.value)


def test_a_tight_prior_moves_the_posterior_and_the_fit_says_so(tmp_path):
    runs = pilot_chinchilla()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FitRetried)
        base = bayescale.fit(runs, law="chinchilla", **QUICK)
        tight = bayescale.fit(runs, law="chinchilla", priors={"alpha": "Uniform(0.70, 0.75)"}, **QUICK)
    # the pilot was simulated at Epoch's alpha 0.348; the card's prior leaves the posterior well below 0.7,
    # the tight prior puts every draw in [0.70, 0.75] and moves E with it
    assert np.quantile(base.draws("alpha"), 0.95) < 0.6
    a = tight.draws("alpha")
    assert a.min() >= 0.70 and a.max() <= 0.75
    assert abs(np.median(tight.draws("E")) - np.median(base.draws("E"))) > 2 * np.std(base.draws("E"))
    assert tight.settings["priors_overridden"] == {"alpha": {"card": "Uniform(0, 1)", "used": "Uniform(0.7, 0.75)"}}
    assert "prior overridden: alpha ~ Uniform(0.7, 0.75)" in str(tight)
    path = tight.save(tmp_path / "tight.nc")
    loaded = bayescale.load_fit(path)
    assert loaded.law.overridden == tight.law.overridden
    assert "prior overridden: alpha" in str(loaded)


def test_cli_prior_with_law_and_unknown_name(tmp_path):
    csv = tmp_path / "runs.csv"
    pilot_chinchilla().to_csv(csv, index=False)
    cmd = [sys.executable, "-m", "bayescale", "fit", str(csv), "--law", "chinchilla", "--chains", "2",
           "--warmup", "300", "--draws", "300", "--no-retry", "--prior", "alpha=Uniform(0.40, 0.45)", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["settings"]["priors_overridden"]["alpha"]["used"] == "Uniform(0.4, 0.45)"
    assert 0.40 <= report["params"]["alpha"]["q5"] and report["params"]["alpha"]["q95"] <= 0.45
    bad = subprocess.run(cmd[:-3] + ["--prior", "zeta=Uniform(0, 1)"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert "no parameter 'zeta'" in bad.stderr and "Traceback" not in bad.stderr
    show = subprocess.run([sys.executable, "-m", "bayescale", "show", "chinchilla", "--prior",
                           "alpha=Uniform(0.4, 0.45)"], capture_output=True, text=True, timeout=120)
    assert "Uniform(0.4, 0.45) (overridden; the card's prior is Uniform(0, 1))" in show.stdout


class _Diag:
    def __init__(self, problems, divergences=0, saturated=0):
        self.problems, self.divergences, self.saturated = tuple(problems), divergences, saturated


def test_retry_settings_follow_the_failure():
    run = dict(chains=4, warmup=1000, draws=1000, seed=0, target_accept=0.8, max_tree_depth=10, dense_mass=True)
    div = retry_settings(_Diag(["3 divergent transitions out of 4000"], divergences=3), run)
    assert div["target_accept"] == 0.99 and div["draws"] == 1000
    assert retry_settings(_Diag(["5 divergent"], divergences=5), {**run, "target_accept": 0.995})["target_accept"] == 0.995
    deep = retry_settings(_Diag(["tree depth 10 reached in 80 of 4000 draws"], saturated=80), run)
    assert deep["max_tree_depth"] == 12 and deep["target_accept"] == 0.8
    ess = retry_settings(_Diag(["effective sample size below 400 for E (bulk 300, tail 200)"]), run)
    assert (ess["warmup"], ess["draws"], ess["target_accept"]) == (2000, 4000, 0.95)
    rhat = retry_settings(_Diag(["R-hat above 1.01 for alpha (1.02)"]), run)
    assert (rhat["warmup"], rhat["draws"]) == (2000, 4000)
    assert retry_settings(_Diag(["tree depth 15 reached"], saturated=9), {**run, "max_tree_depth": 15})["max_tree_depth"] == 15


def test_a_failed_fit_is_refitted_once_and_says_so():
    runs = pilot_chinchilla()
    short = dict(chains=2, warmup=20, draws=20, seed=0, progress=False)   # too short to pass the gate
    # the first attempt has R-hat/ESS problems: twice the warm-up, four times the draws and a higher target
    # acceptance: 0.95, or 0.99 when it also diverged
    with pytest.warns(FitRetried, match="refitted once with warm-up 40, draws per chain 80, target acceptance 0.9[59]"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            f = bayescale.fit(runs, law="chinchilla", **short)
    diverged = any("divergent" in p for p in f.settings["retried"]["first_problems"])
    assert f.settings["target_accept"] == (0.99 if diverged else 0.95)
    assert f.settings["retried"]["first_attempt"]["draws"] == 20
    assert f.settings["draws"] == 80 and f.draws("alpha").size == 2 * 80
    assert "refitted once automatically" in str(f)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        g = bayescale.fit(runs, law="chinchilla", retry=False, **short)
    assert g.settings["retried"] is None and g.settings["draws"] == 20
    assert not any(issubclass(w.category, FitRetried) for w in seen)
    assert any(issubclass(w.category, ConvergenceWarning) for w in seen)


def test_reference_fixes_loss_ref_and_is_recorded():
    runs = pilot_chinchilla()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = bayescale.fit(runs, law="chinchilla", reference={"loss": 3.0}, **QUICK)
    assert f.refs["loss_ref"] == 3.0 and f.settings["reference"]["loss_ref"] == "given"
    assert f.settings["reference"]["N_ref"] == "data"
    assert "reference point fixed: loss_ref = 3" in str(f)
    for bad, words in [({"Q": 1.0}, "not an input or the response"), ({"loss": -1.0}, "positive number"),
                       ({"loss": float("nan")}, "positive number"), ([3.0], "must be a dict")]:
        with pytest.raises(BayescaleError, match=words):
            bayescale.fit(runs, law="chinchilla", reference=bad)


def test_widen_rules():
    from bayescale.inference.sensitivity import widen
    from bayescale.priors import parse_prior

    cases = {"Normal(0, 1)": "Normal(0, 2)", "LogNormal(-1, 1.5)": "LogNormal(-1, 3)",
             "HalfNormal(0.1)": "HalfNormal(0.2)", "Exponential(2)": "Exponential(1)",
             "Gamma(4, 2)": "Gamma(1, 0.5)", "Beta(1.5, 1.5)": "Beta(1.25, 1.25)",
             "Beta(0.5, 0.5)": "Beta(0.25, 0.25)", "Uniform(0.02, 0.5)": "Uniform(0.02, 0.98)",
             "StudentT(3, 0, 1)": "StudentT(3, 0, 2)", "TruncatedNormal(0, 1, -1, 1)": "TruncatedNormal(0, 2, -1, 1)"}
    for before, after in cases.items():
        assert str(widen(parse_prior(before), 2.0)) == after
    g = widen(parse_prior("Gamma(4, 2)"), 2.0)      # same mean 2, sd 1 -> 2
    assert g.args[0] / g.args[1] == pytest.approx(2.0) and (g.args[0] ** 0.5 / g.args[1]) == pytest.approx(2.0)


def test_prior_sensitivity_separates_identified_from_prior_driven_parameters():
    """Data-constrained law on single-epoch runs: R_D_star (the value of repeated data) is not
    identified without repeated runs, so its posterior is its prior and widens with it (width
    ratio ~2 in log terms, well above 1.5); E and alpha are pinned by the data (shift < 0.5 sd)."""
    from bayescale.inference.sensitivity import prior_sensitivity

    runs = pilot_chinchilla().assign(U=lambda d: d["D"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = bayescale.fit(runs, law="data_constrained", chains=2, warmup=500, draws=500, seed=1, progress=False,
                          retry=False)
        at = {"N": np.array([1e10]), "D": np.array([2e11]), "U": np.array([2e11])}
        s = prior_sensitivity(f, factor=2.0, quantities={"loss_at_1e22": lambda g: g.law.mean(
            {k: g.draws(k)[:, None] for k in g.law.param_names}, at, xp="numpy")})
    t = s.table
    assert t.loc["R_D_star", "width_ratio"] > 1.5
    assert abs(t.loc["E", "shift_sd"]) < 0.5 and abs(t.loc["alpha", "shift_sd"]) < 0.5
    assert "R_D_star" in s.moved(0.0) and "E" not in s.moved(0.5)
    assert s.priors["alpha"] == ("Uniform(0.1, 1)", "Uniform(0.1, 1.9)")
    assert s.wide_fit.law.overridden and "prior sensitivity" in str(s)
    assert "loss_at_1e22" in t.index
