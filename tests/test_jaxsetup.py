"""The persistent compilation cache is kept per host and per jax version."""

import os
from pathlib import Path

import jax
import pytest

from bayescale import jaxsetup


def test_fingerprint_is_stable_and_names_the_machine_and_jax():
    first, second = jaxsetup.host_fingerprint(), jaxsetup.host_fingerprint()
    assert first == second
    assert f"jax{jax.__version__}" in first


def test_fingerprint_changes_with_the_cpu(monkeypatch):
    monkeypatch.setattr(jaxsetup, "_cpu_description", lambda: "model name=A;flags=avx avx2")
    a = jaxsetup.host_fingerprint()
    monkeypatch.setattr(jaxsetup, "_cpu_description", lambda: "model name=A;flags=avx avx2 avx512f")
    b = jaxsetup.host_fingerprint()
    assert a != b


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads /proc/cpuinfo (Linux)")
def test_cpu_description_reads_the_instruction_set_flags():
    text = jaxsetup._cpu_description()
    assert "flags=" in text or "Features=" in text


def test_the_cache_in_use_sits_in_this_hosts_folder():
    configured = jax.config.jax_compilation_cache_dir
    if configured is None or not configured.startswith(str(jaxsetup.cache_dir())):
        pytest.skip("the cache is off (BAYESCALE_JAX_CACHE=0) or was configured by the user")
    assert Path(configured) == jaxsetup.cache_dir() / "jax" / jaxsetup.host_fingerprint()


def test_configure_asks_for_host_devices_and_single_function_small_loops(monkeypatch):
    monkeypatch.setenv("BAYESCALE_JAX_CACHE", "0")
    monkeypatch.setenv("XLA_FLAGS", "")
    jaxsetup.configure()
    flags = os.environ["XLA_FLAGS"].split()
    assert any(f.startswith("--xla_force_host_platform_device_count=") for f in flags)
    assert (f"--xla_backend_extra_options=xla_cpu_small_while_loop_byte_threshold={jaxsetup.SMALL_LOOP_BYTES}"
            in flags)


def test_configure_keeps_the_users_xla_flags(monkeypatch):
    monkeypatch.setenv("BAYESCALE_JAX_CACHE", "0")
    mine = "--xla_force_host_platform_device_count=2 --xla_backend_extra_options=xla_cpu_disable_loop_unrolling"
    monkeypatch.setenv("XLA_FLAGS", mine)
    jaxsetup.configure()
    assert os.environ["XLA_FLAGS"] == mine
