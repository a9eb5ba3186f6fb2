"""``fit_many``: one law fitted to many groups of runs, independently, in one batched program.

Every group gets its own posterior (no pooling: that is ``fit(..., vary=...)``).  Per group the
steps are a single fit's: validation (:func:`bayescale.runs.prepare_runs`), reference points from
its own runs, the diagnostics gate.  What differs is how the draws are made: all groups' chains
run as lanes of one compiled program per law (:func:`bayescale.inference.batch.sample_batch`,
lockstep HMC, :mod:`bayescale.inference.lockstep`), started at the batch's own optimum
(:mod:`bayescale.inference.batch` says how), and the gate's statistics are computed for all groups
at once (:func:`bayescale.diagnostics.gate_statistics`, equal to a single fit's).  The posterior is
the same as :func:`bayescale.fit`'s (the same model); the draws are not (another sampler).

The groups that fail the gate are sampled again, together in one batch, with ``RETRY_STEPS`` (3) times
the leapfrog steps per iteration (their failures are slow mixing along a ridge: trajectories too
short for them); a group that still fails is refitted once, on its own, by NUTS
(:func:`bayescale.fit`) with the settings its failure calls for
(:func:`bayescale.fitting.retry_settings`), which is what ``fit``'s own retry would have done.  Each
fit's ``settings["retried"]`` records the attempts; ``retry=False`` turns both off.  The gate is
never changed.

Seeds: group ``key`` is sampled with its own seed, ``group_seed(seed, key)`` (a hash of the two),
recorded in its fit's ``settings["seed"]``; its draws depend on its runs, that seed, the settings
the padded data size (of the batch's largest group) and the number of devices, not on which other
groups are in the batch, how many, or their order.

``executor=``: any ``concurrent.futures``-style executor (``submit(fn, arg)`` returning futures
with ``result()``) or a ``dask.distributed.Client``.  The groups are split into batches (one per
worker by default), each batch is fitted in a worker process by the same program
(the worker asks XLA for as many host devices as this process has, before its JAX starts), and
the results are gathered into one :class:`FitSet` with the same draws as the in-process batch.
Workers must be separate processes that did not inherit an initialised JAX: a
``ProcessPoolExecutor`` needs ``mp_context=multiprocessing.get_context("spawn")`` (a forked copy
of a process running XLA can deadlock), which is checked; threads are refused (tracing NumPyro
models is not thread-safe).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from dataclasses import replace

import numpy as np

from ..cards import resolve_law
from ..checks import check_int
from ..errors import BayescaleError, ConvergenceWarning, DataError, FitRetried
from ..noise import NOISE_MODELS
from .fitset import FitSet, key_label

__all__ = ["fit_many", "group_seed", "split_groups"]

#: Mean leapfrog steps per iteration of the batch sampler (NUTS's tree depth 3; a batched retry: RETRY_STEPS x it).
DEFAULT_STEPS = 8


def group_seed(seed: int, key) -> int:
    """The seed of group ``key`` in a batch with seed ``seed``: 32 bits of SHA-256 of both."""
    text = f"{int(seed)}|{key_label(key)}|{type(key).__name__}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def split_groups(runs, by=None) -> tuple[list, tuple]:
    """``[(key, DataFrame), ...]`` and the ``by`` columns, from a table + ``by``, a list or a dict of tables."""
    from ..runs import read_table

    if isinstance(runs, dict):
        if by is not None:
            raise BayescaleError("by= splits one table; with a dict of tables the dict's keys are the groups")
        return [(_plain(k), read_table(v)[0]) for k, v in runs.items()], ()
    if isinstance(runs, (list, tuple)):
        if by is not None:
            raise BayescaleError("by= splits one table; with a list of tables each table is a group")
        return [(i, read_table(v)[0]) for i, v in enumerate(runs)], ()
    frame, source = read_table(runs)
    if by is None:
        raise BayescaleError("fit_many needs by=<column or columns> to split one table into groups "
                             "(or a list or dict of tables, one per group)")
    cols = [by] if isinstance(by, str) else list(by)
    if not cols or not all(isinstance(c, str) for c in cols):
        raise BayescaleError(f"by must be a column name or a list of column names, got {by!r}")
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise DataError(f"by: the table {source!r} has no column {missing[0]!r}; columns are "
                        f"{list(map(str, frame.columns))}")
    for c in cols:
        empty = np.flatnonzero(frame[c].isna().to_numpy())
        if len(empty):
            from ..errors import format_rows, plural

            raise DataError(f"by column {c!r} has {plural(len(empty), 'missing value')} at "
                            f"{format_rows(empty)}; every run needs a group")
    groups = []
    rest = frame.drop(columns=cols)
    for key, rows in frame.groupby(cols if len(cols) > 1 else cols[0], sort=False).indices.items():
        key = tuple(_plain(k) for k in key) if len(cols) > 1 else _plain(key[0] if isinstance(key, tuple) else key)
        groups.append((key, rest.iloc[rows]))
    return groups, tuple(cols)


def _settings(chains, warmup, draws, seed, target_accept, dense_mass, steps) -> dict:
    if not (isinstance(target_accept, (int, float)) and 0 < target_accept < 1):
        raise BayescaleError(f"target_accept must be in (0, 1), got {target_accept!r}")
    return {"chains": check_int("chains", chains, 1), "warmup": check_int("warmup", warmup, 10),
            "draws": check_int("draws", draws, 10), "seed": check_int("seed", seed, 0, 2**32 - 1),
            "target_accept": float(target_accept), "dense_mass": bool(dense_mass),
            "steps": check_int("steps", steps, 1, 512), "max_tree_depth": 10}


class _Bar:
    """``fit_many [#####     ] 120/1000 fits, 12 s`` on stderr, a note while compiling."""

    def __init__(self, total: int):
        from ..progress import Bar

        self.bar = Bar("fit_many", total, unit="fits")
        self.done = 0

    def __call__(self, done: int, note: str = "") -> None:
        if note:
            self.bar.note(note)
        else:
            self.bar.update(self.done + done)


def fit_many(runs, law=None, *, by=None, formula=None, priors=None, card=None, noise=None, mapping=None,
             chains: int = 4, warmup: int = 1000, draws: int = 1000, seed: int = 0, target_accept: float = 0.8,
             dense_mass: bool = True, steps: int = DEFAULT_STEPS, reference: dict | None = None, retry: bool = True,
             device: str = "auto", executor=None, batch_size: int | None = None,
             progress: bool | None = None) -> FitSet:
    """Fit one law to every group of runs, independently, and return a frozen :class:`FitSet`.

    ``runs``: one table (DataFrame or CSV path) split by the ``by`` column(s), a list of tables
    (keys 0, 1, ...) or a dict of tables (its keys).  The law, ``noise``, ``mapping``, ``chains``,
    ``warmup``, ``draws``, ``target_accept``, ``dense_mass``, ``reference`` (the same for every group) and
    ``retry`` are as for
    :func:`bayescale.fit`; ``steps`` is the batch sampler's mean number of leapfrog steps per
    iteration.  A group whose runs fail validation is not fitted: its error is in
    ``fitset.errors`` and in the summary, and the other groups are fitted.  ``device``:
    ``"auto"`` (a GPU if JAX sees one, else the host CPUs), ``"cpu"`` or ``"gpu"``.
    ``executor``: fit batches of ``batch_size`` groups in worker processes (see the module
    docstring).  ``progress``: a bar counting fits done on stderr (default on; ``False`` silences it).
    """
    t0 = time.perf_counter()
    law = resolve_law(law, formula=formula, priors=priors, card=card)
    noise = noise or law.noise
    if noise not in NOISE_MODELS:
        raise BayescaleError(f"noise must be one of {', '.join(NOISE_MODELS)}, got {noise!r}")
    settings = _settings(chains, warmup, draws, seed, target_accept, dense_mass, steps)
    if reference is not None:
        if not isinstance(reference, dict):
            raise BayescaleError(f"reference must be a dict such as {{'loss': 3.0}}, got {type(reference).__name__}")
        settings["reference"] = dict(reference)
    if device not in ("auto", "cpu", "gpu"):
        raise BayescaleError(f"device must be 'auto', 'cpu' or 'gpu', got {device!r}")
    groups, by_cols = split_groups(runs, by)
    if not groups:
        raise DataError("there are no groups to fit (the table has no rows)")
    from ..sampler import padded_size

    size = padded_size(max(len(frame) for _, frame in groups))       # shared by every batch, retry and worker
    bar = _Bar(len(groups)) if progress is not False else None
    if executor is not None:
        result = _fit_distributed(executor, law, noise, groups, by_cols, mapping, settings, device, size, batch_size,
                                  bar)
    else:
        result = _fit_local(law, noise, groups, by_cols, mapping, settings, device, size, bar)
    if retry:
        result = _retry_failed(_retry_batched(result, settings, device, size, bar), settings, bar)
    else:
        result = replace(result, fits={k: replace(f, settings={**f.settings, "retry": False})
                                       for k, f in result.fits.items()})
    retried = [k for k, f in result.fits.items() if f.settings.get("retried")]
    if retried:
        nuts = [k for k in retried if result.fits[k].settings["sampler"] == "bayescale.nuts"]
        fixed = sum(result.fits[k].diagnostics.passed for k in retried)
        warnings.warn(f"{len(retried)} of {len(result.fits)} fits of {law.name!r} failed the batch's diagnostics gate "
                      f"and were sampled again in one batch with {RETRY_STEPS}x the leapfrog steps; "
                      f"{len(nuts)} that still failed were refitted one by one by NUTS with the settings their "
                      f"failure calls for (fitset.summary() column 'retried'): {fixed} of {len(retried)} then passed",
                      FitRetried, stacklevel=2)
    failed = [k for k, f in result.fits.items() if not f.diagnostics.passed]
    if failed:
        shown = ", ".join(repr(key_label(k)) for k in failed[:5]) + (" ..." if len(failed) > 5 else "")
        warnings.warn(f"{len(failed)} of {len(result.fits)} fits of {law.name!r} failed the diagnostics gate "
                      f"({shown}); fitset.summary() lists what failed for each", ConvergenceWarning, stacklevel=2)
    return FitSet(**{**result.__dict__, "timings": {**result.timings, "total_s": time.perf_counter() - t0}})


def _prepare(law, noise, groups, mapping, seed, reference=None):
    """Validate each group; returns (prepared: (key, Runs, Problem, refs source) or None per group, errors, notes)."""
    from ..errors import DataWarning
    from ..fitting import _references
    from ..runs import prepare_runs
    from .batch import Problem

    prepared, errors, notes = [], {}, {}
    for key, frame in groups:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            try:
                table = prepare_runs(frame.reset_index(drop=True), law, mapping=mapping, noise=noise)
            except BayescaleError as exc:
                first = frame.index[0] if len(frame) else 0
                errors[key] = (f"{type(exc).__name__}: {exc} (rows are counted within the group; its first "
                               f"run is row {first} of the table)")
                prepared.append(None)
                continue
        found = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
        if found:
            notes[key] = tuple(found)
        inputs, loss = table.input_arrays(), table.response_array()
        refs, source = _references(law, inputs, loss, reference)
        prepared.append((key, table, Problem(inputs, refs, loss, group_seed(seed, key)), source))
    return prepared, errors, notes


def _sample_fits(law, noise, items, run, device, size, bar, mapping):
    """Sample ``items`` ((key, Runs, Problem, reference source) each) with the settings ``run``:
    (key -> :class:`~bayescale.result.Fit`, the batch's info)."""
    from ..diagnostics import diagnose_many
    from ..fitting import _versions
    from ..result import Fit, Samples
    from ..sampler import constrained_draws
    from .batch import sample_batch

    results, info = sample_batch(law, noise, [p for _, _, p, _ in items], chains=run["chains"], warmup=run["warmup"],
                                 draws=run["draws"], target_accept=run["target_accept"], dense_mass=run["dense_mass"],
                                 steps=run["steps"], device=device, size=size, progress=bar)
    t = time.perf_counter()
    posteriors = [constrained_draws(law, positions, p.refs) for (positions, _, _), (_, _, p, _) in zip(results, items)]
    stats = [{"diverging": st["diverging"], "n_steps": st["n_steps"], "tree_depth": st["tree_depth"],
              "energy": st["energy"], "acceptance_rate": st["accept_prob"], "step_size": st["step_size"]}
             for _, st, _ in results]
    verdicts = diagnose_many(posteriors, stats, list(law.reported_names) + ["sigma"], run["max_tree_depth"], noise)
    method = f"lockstep HMC batch: up to {info['lanes']} lanes on {info['devices']} {info['device']} device(s)"
    share = {k: info[k] / len(items) for k in ("compile_s", "start_s", "sampling_s")}
    versions = _versions()
    mapping_rec = dict(mapping or {}) if isinstance(mapping, dict) else list(mapping or [])
    overridden = {n: {"card": old, "used": new} for n, old, new in law.overridden}
    fits = {}
    for (key, table, problem, source), post, st, d in zip(items, posteriors, stats, verdicts):
        settings = {**run, "seed": problem.seed, "chain_method": method, "sampler": "bayescale.inference.lockstep",
                    "reference": source, "retry": True, "retried": None, "run_effects": False,
                    "priors_overridden": overridden, "mapping": mapping_rec}
        fits[key] = Fit(samples=Samples(post, None, st), law=law, noise=noise, runs=table, refs=problem.refs,
                        settings=settings, versions=versions, diagnostics=d,
                        timings={**share, "gradients_sampling": int(st["n_steps"].sum())})
    info["postprocess_s"] = time.perf_counter() - t
    return fits, info


def _fit_local(law, noise, groups, by_cols, mapping, settings, device, size, bar) -> FitSet:
    """Validate and sample every group once (no retry); the :class:`FitSet`."""
    t0 = time.perf_counter()
    prepared, errors, notes = _prepare(law, noise, groups, mapping, settings["seed"], settings.get("reference"))
    t_prepare = time.perf_counter() - t0
    if bar is not None:
        bar.done = len(errors)                  # groups that failed validation count as done
    items = [p for p in prepared if p is not None]
    run = {k: settings[k] for k in _RUN_KEYS}
    timings = {"prepare_s": t_prepare, "compile_s": 0.0, "start_s": 0.0, "sampling_s": 0.0, "postprocess_s": 0.0,
               "padded_size": size, "retried": 0}
    fits = {}
    if items:
        fits, info = _sample_fits(law, noise, items, run, device, size, bar, mapping)
        for k in ("compile_s", "start_s", "sampling_s", "postprocess_s"):
            timings[k] += info[k]
        timings.update({"devices": info["devices"], "lanes": info["lanes"], "rows": info["rows"]})
    return FitSet(fits=fits, law=law, noise=noise, by=by_cols, errors=errors, notes=notes,
                  settings={**settings, "device": device, "sampler": "bayescale.inference.lockstep"},
                  timings=timings, keys_order=tuple(k for k, _ in groups))


_RUN_KEYS = ("chains", "warmup", "draws", "target_accept", "dense_mass", "steps", "max_tree_depth")

#: A batched retry's leapfrog steps per iteration, as a multiple of the first attempt's: the first attempt's
#: failures are slow mixing along a ridge (trajectories too short), not divergences (measured on the 92
#: Revisiting-NSL curves: 72 pass at steps=8, 90 at 24, 78 at 16 with target acceptance 0.9).
RETRY_STEPS = 3


def _retry_batched(fitset: FitSet, settings: dict, device: str, size: int, bar=None) -> FitSet:
    """The fits that failed the gate sampled again, all in one batch, with ``RETRY_STEPS`` times the steps
    (the same seeds, padded size and gate); what still fails goes on to :func:`_retry_failed` (NUTS)."""
    from .batch import Problem

    failed = [k for k, f in fitset.fits.items() if not f.diagnostics.passed]
    if not failed:
        return fitset
    if bar is not None:
        bar(0, f"{len(failed)} of {len(fitset.fits)} fits failed the gate: sampling them again in one batch with "
               f"{RETRY_STEPS}x the leapfrog steps")
    t0 = time.perf_counter()
    items = []
    for key in failed:
        f = fitset.fits[key]
        items.append((key, f.runs, Problem(f.runs.input_arrays(), f.refs, f.runs.response_array(), f.settings["seed"]),
                      f.settings["reference"]))
    run = {**{k: settings[k] for k in _RUN_KEYS}, "steps": settings["steps"] * RETRY_STEPS}
    mapping = fitset.fits[failed[0]].settings["mapping"]
    again, _ = _sample_fits(fitset.law, fitset.noise, items, run, device, size, None, mapping)
    fits = dict(fitset.fits)
    for key in failed:
        first = fits[key]
        retried = {"first_attempt": {"steps": first.settings["steps"], "sampler": first.settings["sampler"]},
                   "first_problems": list(first.diagnostics.problems), "changed": {"steps": run["steps"]}}
        fits[key] = replace(again[key], settings={**again[key].settings, "retried": retried})
    timings = {**fitset.timings, "batch_retried": len(failed), "batch_retry_s": time.perf_counter() - t0}
    return replace(fitset, fits={k: fits[k] for k in fitset.fits}, timings=timings)


def _retry_failed(fitset: FitSet, settings: dict, bar=None) -> FitSet:
    """Every fit that failed the gate refitted once, by NUTS (:func:`bayescale.fit`), with the settings its
    failure calls for (:func:`bayescale.fitting.retry_settings`): NUTS adapts its trajectories to each
    posterior, which a hard one needs and a batch's shared step count cannot give."""
    from ..fitting import fit, retry_settings

    failed = [k for k, f in fitset.fits.items() if not f.diagnostics.passed]
    if not failed:
        return fitset
    if bar is not None:
        bar(0, f"{len(failed)} fits still fail the gate: refitting each by NUTS")
    fits, timings = dict(fitset.fits), dict(fitset.timings)
    t0 = time.perf_counter()
    nuts = ("chains", "warmup", "draws", "target_accept", "dense_mass", "max_tree_depth")
    for key in failed:
        first = fits[key]
        earlier = first.settings.get("retried")          # the batched retry's record, if it ran
        run = {k: first.settings[k] for k in nuts}
        again = retry_settings(first.diagnostics, run)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            new = fit(first.runs.table, law=fitset.law, noise=fitset.noise, seed=first.settings["seed"], retry=False,
                      progress=False, reference=settings.get("reference"), **again)
        steps = earlier["first_attempt"]["steps"] if earlier else first.settings["steps"]
        retried = {"first_attempt": {**{k: run[k] for k in again}, "sampler": first.settings["sampler"],
                                     "steps": steps},
                   "first_problems": list(earlier["first_problems"] if earlier else first.diagnostics.problems),
                   **({"batched_retry": {"steps": earlier["changed"]["steps"],
                                         "problems": list(first.diagnostics.problems)}} if earlier else {}),
                   "changed": {**{k: again[k] for k in again if again[k] != run[k]}, "sampler": "bayescale.nuts"}}
        fits[key] = replace(new, runs=first.runs, settings={**new.settings, "retry": True, "retried": retried,
                                                            "mapping": first.settings["mapping"]})
    timings["retried"] = len(failed)
    timings["retry_s"] = time.perf_counter() - t0
    return replace(fitset, fits={k: fits[k] for k in fitset.fits}, timings=timings)


# ---------------------------------------------------------------------- executors


def _check_executor(executor) -> int:
    """The executor's number of workers (for the default batch size); refuses threads and forked pools."""
    import concurrent.futures as cf

    if isinstance(executor, cf.ThreadPoolExecutor):
        raise BayescaleError("executor: threads share this process's JAX, and tracing NumPyro models is not "
                             "thread-safe; use ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("
                             "'spawn')) or a dask.distributed Client (or no executor: the batch already uses "
                             "every local device)")
    if isinstance(executor, cf.ProcessPoolExecutor):
        ctx = getattr(executor, "_mp_context", None)
        method = ctx.get_start_method() if ctx is not None else "fork"
        if method == "fork":
            raise BayescaleError("a ProcessPoolExecutor must start its workers with spawn, not fork "
                                 "(a forked copy of a process running XLA can deadlock): use "
                                 "ProcessPoolExecutor(n, mp_context=multiprocessing.get_context('spawn'))")
        return int(getattr(executor, "_max_workers", 1) or 1)
    if type(executor).__module__.startswith("distributed"):
        return max(1, len(executor.scheduler_info().get("workers", {})))
    if not hasattr(executor, "submit"):
        raise BayescaleError(f"executor must have a submit() method (a concurrent.futures executor or a "
                             f"dask.distributed Client), got {type(executor).__name__}")
    return int(getattr(executor, "_max_workers", 1) or 1)


def cap_threads(devices: int) -> None:
    """In a worker whose JAX has not started: ``devices`` host CPU devices and single-threaded XLA kernels
    (the parent's device count, so that the worker compiles the program the parent would)."""
    import re

    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        return
    flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
    flags += f" --xla_force_host_platform_device_count={int(devices)} --xla_cpu_multi_thread_eigen=false"
    os.environ["XLA_FLAGS"] = " ".join(flags.split())


def _worker(payload: dict) -> FitSet:
    """Fit one batch of groups in a worker process (the function the executor runs)."""
    cap_threads(payload["devices"])
    from ..cards import law_from_text

    law = law_from_text(payload["law_text"], source=payload["law_source"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _fit_local(law, payload["noise"], payload["groups"], payload["by"], payload["mapping"],
                          payload["settings"], payload["device"], payload["size"], None)


def _fit_distributed(executor, law, noise, groups, by_cols, mapping, settings, device, size, batch_size,
                     bar) -> FitSet:
    import concurrent.futures as cf

    from .batch import devices_for

    workers = _check_executor(executor)
    devs = len(devices_for(device))
    # a worker with this process's device count and padded size: a lane's arithmetic does not depend on the
    # other lanes, so the draws are the in-process batch's
    # default: the groups shared out evenly over the workers (a batch's last chunk is padded to a whole one)
    batch_size = check_int("batch_size", batch_size, 1) if batch_size is not None else \
        math.ceil(len(groups) / workers)
    batches = [groups[i:i + batch_size] for i in range(0, len(groups), batch_size)]
    t0 = time.perf_counter()
    futures = {}
    for batch in batches:
        payload = {"law_text": law.text, "law_source": law.source, "noise": noise, "groups": batch, "by": by_cols,
                   "mapping": mapping, "settings": settings, "device": device, "size": size, "devices": devs}
        futures[executor.submit(_worker, payload)] = len(batch)
    if type(executor).__module__.startswith("distributed"):
        from distributed import as_completed
    else:
        as_completed = cf.as_completed
    parts, done = [], 0
    for future in as_completed(list(futures)):
        parts.append(future.result())
        done += futures[future]
        if bar is not None:
            bar(done)
    fits, errors, notes = {}, {}, {}
    for part in parts:
        fits.update({k: _rebind(f, law) for k, f in part.fits.items()})
        errors.update(part.errors)
        notes.update(part.notes)
    order = tuple(k for k, _ in groups)
    timings = {"workers": workers, "batches": len(batches), "wall_s": time.perf_counter() - t0,
               "worker_sampling_s": sum(p.timings.get("sampling_s", 0.0) for p in parts), "retried": 0}
    return FitSet(fits={k: fits[k] for k in order if k in fits}, law=law, noise=noise, by=by_cols,
                  errors={k: errors[k] for k in order if k in errors}, notes=notes,
                  settings={**settings, "device": device, "sampler": "bayescale.inference.lockstep",
                            "executor": type(executor).__name__},
                  timings=timings, keys_order=order)


def _rebind(fit, law):
    """A worker's fit with the parent's Law object (equal card text), so the set shares one."""
    from dataclasses import replace

    return replace(fit, law=law) if fit.law.text == law.text else fit
