"""A memo for one group of a model pooled over groups (issue 13, part 3): fitted from runs with ``pool=`` and
``vary=``, or given pooled fits; compared whole, backtested as one pooled model, answered for ``group``.

The data: the shipped 40-run pilot, its runs dealt alternately to families ``a`` and ``b``, family ``b``'s
losses 4% higher (a level difference, what ``vary=["L_c"]`` models).  Short sampler settings: what is
tested is which fit answers, not the gate's verdict."""

from __future__ import annotations

import contextlib
import io
import json
import warnings

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.errors import BayescaleError
from bayescale.memo import build_memo, render_markdown, write_memo

PLAN = {"N": 7e10, "D": 1.4e12}
SHORT = dict(chains=2, warmup=150, draws=150)


def families():
    from bayescale.data import pilot_chinchilla

    runs = pilot_chinchilla().reset_index(drop=True)
    runs["fam"] = np.resize(["a", "b"], len(runs))
    runs.loc[runs["fam"] == "b", "loss"] *= 1.04
    return runs


@pytest.fixture(scope="module")
def memo_b():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_memo(families(), ["chinchilla"], pool="fam", vary=["L_c"], group="b", plan=PLAN,
                          figures=False, progress=False, **SHORT)


def test_a_pooled_memo_answers_for_the_named_group(memo_b):
    fit = memo_b.fits[0]
    assert fit.pooling is not None and fit.pooling.levels == ("a", "b") and fit.pooling.vary == ("L_c",)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = bs.predict(fit.group("b"), pd.DataFrame([PLAN]))
        a = bs.predict(fit.group("a"), pd.DataFrame([PLAN]))
    loss = memo_b.answer.plan.loss
    assert loss.median == pytest.approx(float(b["pred_median"].iloc[0]), rel=0.01)
    assert float(a["pred_median"].iloc[0]) < loss.median       # family b's level is higher
    assert memo_b.answer.plan.calibration is None               # the posterior predictive, and it says so
    assert any("for group 'b' of column 'fam'" in c and "not available for pooled fits" in c
               for c in memo_b.answer.caveats)
    assert "for group 'b' of column 'fam'" in render_markdown(memo_b)


def test_a_pooled_memos_backtest_is_the_pooled_model(memo_b):
    e = memo_b.evidence
    assert "one model partially pooled over 'fam' (L_c varying by group)" in e.backtest_holdout
    assert e.backtest and e.backtest[0].n_test == 8
    assert e.law_check is None                                   # not available for pooled fits yet


def test_a_new_groups_memo_is_wider_and_the_fit_file_keeps_the_pooling(memo_b, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new = build_memo(fits=list(memo_b.fits), group="new", plan=PLAN, backtest=False, figures=False,
                         progress=False)
    w = lambda e: e.upper_90 - e.lower_90       # noqa: E731
    assert w(new.answer.plan.loss) > 1.5 * w(memo_b.answer.plan.loss)
    assert any("a new group (one not in the data" in c for c in new.answer.caveats)
    paths = write_memo(memo_b, tmp_path / "memo")
    back = bs.load_fit(paths["fits"][0])
    assert back.pooling == memo_b.fits[0].pooling


def test_a_pooled_memo_says_what_it_needs(memo_b):
    fits = list(memo_b.fits)
    with pytest.raises(BayescaleError, match=r"pooled over 2 groups of 'fam': say which group .* 'a', 'b', or 'new'"):
        build_memo(fits=fits, plan=PLAN, backtest=False, figures=False, progress=False)
    with pytest.raises(BayescaleError, match="group 'z' is not a level of column 'fam'"):
        build_memo(fits=fits, group="z", plan=PLAN, backtest=False, figures=False, progress=False)
    with pytest.raises(BayescaleError, match="calibrate=True is not available for fits pooled over groups"):
        build_memo(fits=fits, group="a", calibrate=True, plan=PLAN, backtest=False, figures=False, progress=False)
    # checked before any fit
    with pytest.raises(BayescaleError, match="needs both pool"):
        build_memo(families(), ["chinchilla"], pool="fam", plan=PLAN, progress=False)
    with pytest.raises(BayescaleError, match=r"answers for one group: give group=LEVEL"):
        build_memo(families(), ["chinchilla"], pool="fam", vary=["L_c"], plan=PLAN, progress=False)
    with pytest.raises(BayescaleError, match="law_check=True is not available"):
        build_memo(families(), ["chinchilla"], pool="fam", vary=["L_c"], group="a", law_check=True, plan=PLAN,
                   progress=False)
    with pytest.raises(BayescaleError, match="with fits=, the fits' own pooling is used"):
        build_memo(fits=fits, pool="fam", vary=["L_c"], group="a", plan=PLAN, progress=False)


def test_a_group_needs_pooled_fits():
    from bayescale.data import pilot_chinchilla

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = bs.fit(pilot_chinchilla(), law="chinchilla", chains=1, warmup=50, draws=50, retry=False,
                       progress=False)
    with pytest.raises(BayescaleError, match="group='a' is given, but no fit is pooled over groups"):
        build_memo(fits=[plain], group="a", plan=PLAN, backtest=False, figures=False, progress=False)


def test_command_line_memo_for_a_group(memo_b, tmp_path):
    from bayescale.cli import main

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])
        return code, out.getvalue(), err.getvalue()

    nc = memo_b.fits[0].save(tmp_path / "pooled.nc")
    code, out, err = run("memo", nc, "--group", "a", "--plan", "N=7e10,D=1.4e12", "--no-backtest", "--out",
                         tmp_path / "m", "--no-progress", "--json")
    assert code in (0, 3), err
    memo = json.loads(out)["memo"]
    assert any("for group 'a' of column 'fam'" in c for c in memo["answer"]["caveats"])
    csv = tmp_path / "fam.csv"
    families().to_csv(csv, index=False)
    code, out, err = run("memo", csv, "--law", "chinchilla", "--pool", "fam", "--plan", "N=7e10,D=1.4e12", "--out",
                         tmp_path / "m2")
    assert code == 2 and "needs both pool" in err and "Traceback" not in err
