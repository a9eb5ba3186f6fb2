"""JAX process settings, applied when bayescale is imported.

* Host CPU devices: NUTS chains run in parallel, one per device, only if XLA
  exposes several host devices, which must be set before JAX initialises its
  backend.  Unless ``XLA_FLAGS`` already sets it, bayescale asks for
  ``max(4, cpu_count)`` host devices (4 = the default number of chains).
* Persistent compilation cache: the compiled sampler for a law and data shape
  is written to ``$BAYESCALE_CACHE_DIR/jax/<host>`` (default
  ``~/.cache/bayescale/jax/<host>``) so a second fit in a new process skips
  most of the JIT time.  ``<host>`` is a fingerprint of the jax/jaxlib
  versions, the CPU model and its instruction-set flags: XLA's CPU executables
  are compiled for the host's instruction set, and loading one built elsewhere
  (a home directory shared between different machines, or an upgraded jaxlib)
  can abort the process instead of raising an error.  Set
  ``BAYESCALE_JAX_CACHE=0`` to turn the cache off.  A cache folder that
  cannot be used (read-only, a file in its place, a parent that cannot be
  created) turns the caches off for the process instead of failing: every
  command still works, and the first fit says so in one
  :class:`~bayescale.errors.CacheWarning` (:func:`warn_if_no_cache`).
* Small loops as one function: XLA's CPU runtime runs a loop's body as a
  sequence of separate kernels ("thunks"), ~0.1 us of dispatch each; a NUTS
  trajectory is a loop of many tiny kernels over a few hundred data points,
  so that overhead exceeded the arithmetic.  XLA compiles a ``while`` loop
  whose estimated memory traffic is under a byte threshold (default 1 KiB)
  into a single function instead; bayescale raises the threshold to 4 MiB
  (a model over up to ~10^4 runs).  Measured on Epoch's 240 Chinchilla runs:
  sampling 0.85 s -> 0.46 s, compilation ~0.3 s shorter.  Unless
  ``XLA_FLAGS`` already sets ``--xla_backend_extra_options``.
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

__all__ = ["cache_dir", "cache_enabled", "configure", "host_fingerprint", "warn_if_no_cache"]

_DEVICE_FLAG = "--xla_force_host_platform_device_count"
_EXTRA_FLAG = "--xla_backend_extra_options"
SMALL_LOOP_BYTES = 1 << 22
_STATE = {"problem": None, "warned": False}


def cache_dir() -> Path:
    root = os.environ.get("BAYESCALE_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bayescale"


def _cpu_description() -> str:
    """The CPU model and instruction-set flags (Linux), else what ``platform`` knows."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        text = ""
    wanted = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "flags", "Features", "CPU implementer", "CPU part") and key not in wanted:
            wanted[key] = " ".join(sorted(value.split())) if key in ("flags", "Features") else value.strip()
    if wanted:
        return ";".join(f"{k}={v}" for k, v in sorted(wanted.items()))
    return f"{platform.machine()};{platform.processor()}"


def host_fingerprint() -> str:
    """A short name for (jax, jaxlib, machine, CPU model and flags): one cache folder per combination."""
    import jax
    import jaxlib

    text = "|".join((jax.__version__, jaxlib.__version__, platform.machine(), _cpu_description()))
    return f"{platform.machine()}-jax{jax.__version__}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def configure() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if _DEVICE_FLAG not in flags:
        count = max(4, os.cpu_count() or 1)
        flags = os.environ["XLA_FLAGS"] = f"{flags} {_DEVICE_FLAG}={count}".strip()
    if _EXTRA_FLAG not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {_EXTRA_FLAG}=xla_cpu_small_while_loop_byte_threshold={SMALL_LOOP_BYTES}"
    if os.environ.get("BAYESCALE_JAX_CACHE", "1") != "0":
        import jax

        if jax.config.jax_compilation_cache_dir is None:
            path = cache_dir() / "jax" / host_fingerprint()
            problem = _unusable(path)
            if problem:
                _STATE["problem"] = (f"the cache folder {str(cache_dir())!r} cannot be used ({problem}); "
                                     f"running without caches, so every process traces and compiles the "
                                     f"sampler again (seconds per law). Set BAYESCALE_CACHE_DIR to a writable "
                                     f"folder, or BAYESCALE_JAX_CACHE=0 to turn the caches off quietly")
                return
            jax.config.update("jax_compilation_cache_dir", str(path))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _unusable(path: Path) -> str | None:
    """Why ``path`` cannot hold the cache (None if it can): it cannot be created, or written in."""
    from .storage.atomic import check_writable

    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        return f"{str(path)!r} is not a folder"
    except OSError as exc:
        return f"{str(path)!r} cannot be created: {exc.strerror or exc}"
    if not path.is_dir():
        return f"{str(path)!r} is not a folder"
    problem = check_writable(path / "probe")
    return f"{str(path)!r} is not writable: {problem}" if problem else None


def cache_enabled() -> bool:
    """Whether the program and compilation caches are in use in this process."""
    return os.environ.get("BAYESCALE_JAX_CACHE", "1") != "0" and _STATE["problem"] is None


def warn_if_no_cache() -> None:
    """One :class:`~bayescale.errors.CacheWarning` per process if the cache folder proved unusable."""
    if _STATE["problem"] and not _STATE["warned"]:
        import warnings

        from .errors import CacheWarning

        _STATE["warned"] = True
        warnings.warn(_STATE["problem"], CacheWarning, stacklevel=3)
