"""JAX process settings, applied when bayescale is imported.

* Host CPU devices: NUTS chains run in parallel, one per device, only if XLA
  exposes several host devices, which must be set before JAX initialises its
  backend.  Unless ``XLA_FLAGS`` already sets it, bayescale asks for
  ``max(4, cpu_count)`` host devices (4 = the default number of chains).
* Persistent compilation cache: the compiled sampler for a law and data shape
  is written to ``$BAYESCALE_CACHE_DIR/jax`` (default ``~/.cache/bayescale/jax``)
  so a second fit in a new process skips most of the JIT time.  Set
  ``BAYESCALE_JAX_CACHE=0`` to turn it off.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "configure"]

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def cache_dir() -> Path:
    root = os.environ.get("BAYESCALE_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "bayescale"


def configure() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if _DEVICE_FLAG not in flags:
        count = max(4, os.cpu_count() or 1)
        os.environ["XLA_FLAGS"] = f"{flags} {_DEVICE_FLAG}={count}".strip()
    if os.environ.get("BAYESCALE_JAX_CACHE", "1") != "0":
        import jax

        if jax.config.jax_compilation_cache_dir is None:
            path = cache_dir() / "jax"
            path.mkdir(parents=True, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", str(path))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
