"""JAX on several devices (four CPU devices, in a fresh process: the device count is fixed
when JAX starts): sharded inputs keep their sharding and values, committed inputs their
device."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("jax", reason="jax: not installed (the 'jax' extra)")

_SHARDED = textwrap.dedent("""
    import numpy as np, jax, jax.numpy as jnp, xcorr
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 64, 64)).astype(np.float32)
    t = rng.standard_normal((9, 9)).astype(np.float32)
    b = rng.standard_normal((4, 64, 64)).astype(np.float32)
    sharded = NamedSharding(Mesh(np.array(jax.devices()), ("b",)), P("b"))
    xs, bs = jax.device_put(x, sharded), jax.device_put(b, sharded)
    ops = {
        "corr2d": (lambda a: xcorr.corr2d(a, t), lambda a: xcorr.corr2d(a, t)),
        "match_template": (lambda a: xcorr.match_template(a, t),
                           lambda a: xcorr.match_template(a, t)),
        "masked": (lambda a: xcorr.match_template(a, t, mask=t > 0),
                   lambda a: xcorr.match_template(a, t, mask=t > 0)),
        "local_ncc": (lambda a: xcorr.local_ncc(a, bs, 5), lambda a: xcorr.local_ncc(a, b, 5)),
    }
    for name, (f, ref) in ops.items():
        want = np.asarray(ref(x))
        for how, g in (("eager", f), ("jit", jax.jit(f))):
            got = g(xs)
            assert got.sharding.spec == P("b"), (name, how, got.sharding)
            np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=2e-5,
                                       err_msg=f"{name} {how}")
    print("ok")
""")


_COMMITTED = textwrap.dedent("""
    import numpy as np, jax, jax.numpy as jnp, pytest, xcorr
    from xcorr.backends import _jax as be
    dev = jax.devices()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((300, 300)), jnp.float32)   # uncommitted
    k = jnp.asarray(rng.standard_normal((9, 9)), jnp.float32)
    assert be._runs_on_host(x, k, "direct")  # the NumPy backend's kernels, eager
    for call in (lambda a, b: xcorr.corr2d(a, b), lambda a, b: xcorr.match_template(a, b),
                 lambda a, b: xcorr.corr2d(a, b, mode="same")):
        # as JAX's own: the committed operand's device, committed
        for a, b in ((x, jax.device_put(k, dev[1])), (jax.device_put(x, dev[2]), k)):
            want = jax.scipy.signal.correlate2d(a, b, mode="valid")
            got = call(a, b)
            assert got.devices() == want.devices() and be.committed(got), got.devices()
    # committed to two devices: JAX's error at every size, not only where XLA runs it
    for n, m in ((16, 3), (300, 9)):
        a = jax.device_put(x[:n, :n], dev[1])
        b = jax.device_put(k[:m, :m], dev[2])
        with pytest.raises(ValueError, match="incompatible devices"):
            xcorr.corr2d(a, b)
    print("ok")
""")


def _run(script: str) -> None:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr[-3000:]


def test_batch_sharded_inputs_stay_sharded():
    """match_template's host callback gathered a batch-sharded image onto one host call and
    returned it replicated (corr2d's callback already stayed out of sharded programs)."""
    _run(_SHARDED)


def test_results_go_where_jax_puts_them():
    """The NumPy backend's eager results took the image's placement only: a kernel committed
    to another device left the result uncommitted on the default one; and two committed
    devices raised JAX's error only at sizes XLA ran."""
    _run(_COMMITTED)
