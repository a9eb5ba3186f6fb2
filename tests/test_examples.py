"""Smoke tests of the runnable examples in ``examples/``, each with its small-sample flag.

Each example runs as a script in a fresh process (as a user would run it) from a temporary
directory, on the real data read in place from the shared datasets folder; the test checks it
exits 0, prints its key result and writes its files.  These are plumbing checks (the small
settings are not meant to pass the diagnostics gate); the statistics are tested elsewhere.
Examples that fit several laws are marked slow (CI runs them after the default suite).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(script: str, args, shared: Path, cwd: Path) -> str:
    env = {**os.environ, "BAYESCALE_SHARED": str(shared.parent), "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=900)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_epoch_chinchilla_quick(shared_datasets, tmp_path):
    data = shared_datasets / "chinchilla_epoch" / "chinchilla_epoch_tidy.csv"
    out = run_example("epoch_chinchilla.py", ["--quick", "--data", data, "--out", tmp_path / "fig"],
                      shared_datasets, tmp_path)
    assert "Epoch estimate" in out and "D*/N*" in out and "regret" in out
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == ["allocation.png", "bands.png", "ratio.png"]


@pytest.mark.slow
def test_bnsl_addition_quick(shared_datasets, tmp_path):
    out = run_example("bnsl_addition.py", ["--quick", "--out", tmp_path / "fig"], shared_datasets, tmp_path)
    assert "Model comparison by PSIS-LOO on 17 runs" in out
    assert "held out rows with split == 'extrapolate'" in out
    assert "power_law_constant: RMSLE" in out and "bnsl1: RMSLE" in out
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == ["backtest.png", "compare.png"]


@pytest.mark.slow
def test_memo_plan_quick(shared_datasets, tmp_path):
    out = run_example("memo_plan.py", ["--quick", "--data-dir", shared_datasets, "--out", tmp_path / "memo"],
                      shared_datasets, tmp_path)
    assert "Chinchilla's run, revisited" in out and "D/N = 20" in out
    for name in ("memo.md", "memo.html", "memo.json", "bands.png", "fits/chinchilla.nc", "fits/kaplan.nc"):
        assert (tmp_path / "memo" / name).is_file(), name
    md = (tmp_path / "memo" / "memo.md").read_text()
    assert "### The plan against the optimum" in md and "Backtest of the largest runs" in md


@pytest.mark.slow
def test_revisiting_backtest_one_curve(shared_datasets, tmp_path):
    script = EXAMPLES / "revisiting_backtest.py"
    if not script.is_file():
        pytest.skip("examples/revisiting_backtest.py is not there")
    out = run_example("revisiting_backtest.py", ["--max-curves", "1", "--chains", "2", "--warmup", "300",
                                                 "--draws", "300"], shared_datasets, tmp_path)
    assert "power_law_constant" in out and "bnsl1" in out
