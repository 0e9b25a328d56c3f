"""The ``xcorr`` command, driven in subprocesses as a user would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import unavailable

import xcorr
from xcorr.cli import COMMANDS, edge_image
from xcorr.train import learn_kernel


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xcorr", *args], capture_output=True,
                          text=True, timeout=300, env=env)


def epoch_lines(text: str) -> dict[int, float]:
    return {int(e): float(v) for e, v in re.findall(r"^epoch (\d+), loss (\S+)$", text, re.M)}


def test_no_arguments_prints_the_seed_examples() -> None:
    p = run()
    assert p.returncode == 0, p.stderr
    assert "corr2d(X, K) for the 3x3 example:\n[[19 25]\n [37 43]]" in p.stdout
    assert "[ 0.  1.  0.  0.  0. -1.  0.]" in p.stdout  # a row of the edge map
    assert "the transposed image has none" in p.stdout


def test_demo_replays_the_notebook(backend: str) -> None:
    p = run("demo", "--backend", backend)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    titles = ["3x3 example", "the edge image X", "its vertical edges", "transposed image",
              "learn a 1x2 kernel", "epoch 2, loss", "epoch 10, loss", "learned kernel"]
    positions = [out.index(t) for t in titles]
    assert positions == sorted(positions), out
    x = edge_image()
    ref = learn_kernel(x, xcorr.corr2d(x, [[1.0, -1.0]]), (1, 2), epochs=10)
    printed = epoch_lines(out)
    assert sorted(printed) == [2, 4, 6, 8, 10]
    for epoch, loss in printed.items():
        assert loss == pytest.approx(ref.losses[epoch - 1], abs=1.5e-3)  # printed to 3 places
    kernel = re.search(r"learned kernel.*:\n\[\[\s*(\S+)\s+(\S+?)\s*\]\]", out)
    assert kernel is not None, out
    np.testing.assert_allclose([float(kernel[1]), float(kernel[2])], ref.kernel[0], atol=1e-4)


def test_train_all_backends_side_by_side(tmp_path: Path) -> None:
    png = tmp_path / "losses.png"
    p = run("train", "--epochs", "4", "--plot", str(png))
    assert p.returncode == 0, p.stderr
    ran = [name for name in xcorr.BACKENDS if unavailable(name) is None]
    header = next(line for line in p.stdout.splitlines() if line.startswith("epoch"))
    assert header.split() == ["epoch", *ran]
    rows = [line.split() for line in p.stdout.splitlines() if re.match(r"\s+\d+\s", line)]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4]
    for row in rows:  # every backend follows the same trajectory (float32)
        np.testing.assert_allclose([float(v) for v in row[1:]], float(row[1]), rtol=1e-4)
    for name in ran:
        assert re.search(rf"^{name}\s+float32\s+[\d.]+ s\s+[\d.]+ s\s+[\d.]+ ms\s+\[\[",
                         p.stdout, re.M), p.stdout
    for name in set(xcorr.BACKENDS) - set(ran):
        assert f"skipping {name}:" in p.stderr
    assert "\r" not in p.stderr  # no progress line when stderr is not a terminal
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5_000


def test_train_options() -> None:
    p = run("train", "--backend", "numpy", "--epochs", "3", "--lr", "0.01", "--seed", "4",
            "--dtype", "float64")
    assert p.returncode == 0, p.stderr
    x = edge_image()
    ref = learn_kernel(x, xcorr.corr2d(x, [[1.0, -1.0]]), (1, 2), lr=0.01, epochs=3, seed=4)
    rows = [line.split() for line in p.stdout.splitlines() if re.match(r"\s+\d+\s", line)]
    np.testing.assert_allclose([float(r[1]) for r in rows], ref.losses, rtol=1e-5)
    assert re.search(r"^numpy\s+float64\s", p.stdout, re.M)


def test_info_lists_every_backend() -> None:
    p = run("info")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith(f"xcorr {xcorr.__version__}")
    for name in xcorr.BACKENDS:
        line = next(line for line in lines if line.split()[:1] == [name])
        if unavailable(name) is None:
            assert "unavailable" not in line
        else:
            assert line.endswith("unavailable")
            assert lines[lines.index(line) + 1].split()[0] == "why:"
    assert "cpu" in lines[next(i for i, s in enumerate(lines) if s.startswith("numpy"))]


@pytest.mark.parametrize("args", [[], *([name] for name in COMMANDS)])
def test_help_everywhere(args: list[str]) -> None:
    p = run(*args, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"usage: xcorr {' '.join(args)}".rstrip())
    assert "`" not in p.stdout  # plain text, not the docstrings' reStructuredText


def test_help_shows_the_module_docstring_as_plain_text() -> None:
    p = run("--help")
    assert "The xcorr command: the seed notebook" in " ".join(p.stdout.split())


def test_plot_into_a_missing_folder_exits_2_before_training(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "x.png"
    p = run("train", "--backend", "numpy", "--plot", str(target))
    assert p.returncode == 2
    assert f"argument --plot: cannot write {target}: the folder {target.parent} does not " \
           "exist" in p.stderr
    assert p.stdout == ""  # nothing was trained
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("name", ["losses.txt", "losses", "losses.pgf"])
def test_plot_without_an_image_format_exits_2_before_training(tmp_path: Path,
                                                               name: str) -> None:
    """Found after training before (matplotlib: "Format 'txt' is not supported"; or, without
    an extension, a PNG at another name than the one printed; pgf: "'xelatex' not found",
    a traceback, where no LaTeX is installed)."""
    p = run("train", "--backend", "numpy", "--plot", str(tmp_path / name))
    assert p.returncode == 2 and p.stdout == ""
    assert "e.g. losses.png" in p.stderr and "Traceback" not in p.stderr


def test_a_failing_plot_write_is_an_error_not_a_traceback(tmp_path: Path, monkeypatch,
                                                          capsys) -> None:
    """A folder that os.access calls writable can still refuse the file (root in /proc):
    an uncaught OSError traceback before; now xcorr's error line and exit status 1."""
    pytest.importorskip("matplotlib", reason="matplotlib: not installed (the 'plot' extra)")
    from matplotlib.figure import Figure

    from xcorr import cli

    def refuse(self, *args, **kwargs):
        raise PermissionError("[Errno 1] Operation not permitted: 'x.png'")

    monkeypatch.setattr(Figure, "savefig", refuse)
    rc = cli.main(["train", "--backend", "numpy", "--epochs", "2", "--plot",
                   str(tmp_path / "x.png")])
    assert rc == 1
    assert "xcorr: error: [Errno 1] Operation not permitted" in capsys.readouterr().err


def test_a_negative_seed_is_a_command_line_error() -> None:
    p = run("train", "--backend", "numpy", "--seed", "-5")
    assert p.returncode == 2
    assert "argument --seed: must be a non-negative integer, got -5" in p.stderr


def test_plot_onto_a_directory_exits_2(tmp_path: Path) -> None:
    p = run("train", "--backend", "numpy", "--plot", str(tmp_path))
    assert p.returncode == 2
    assert f"argument --plot: {tmp_path} is a directory" in p.stderr


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root may write into a read-only folder: the check cannot fail")
def test_plot_into_a_read_only_folder_exits_2(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        p = run("train", "--backend", "numpy", "--plot", str(folder / "x.png"))
    finally:
        folder.chmod(0o755)
    assert p.returncode == 2
    assert "is not writable" in p.stderr


@pytest.mark.skipif(unavailable("jax") is not None, reason=f"jax: {unavailable('jax')}")
@pytest.mark.parametrize("x64", [False, True])
def test_float64_on_jax_without_x64_says_it_trained_in_float32(x64: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    if x64:
        env["JAX_ENABLE_X64"] = "1"
    p = run("train", "--backend", "jax", "numpy", "--dtype", "float64", "--epochs", "2",
            env=env)
    assert p.returncode == 0, p.stderr
    assert re.search(r"^numpy\s+float64\s", p.stdout, re.M)
    note = "note: jax trained in float32, not float64: JAX's 64-bit mode is off"
    if x64:
        assert re.search(r"^jax\s+float64\s", p.stdout, re.M), p.stdout
        assert "note:" not in p.stdout
    else:
        assert re.search(r"^jax\s+float32\s", p.stdout, re.M), p.stdout
        assert note in p.stdout and "JAX_ENABLE_X64=1" in p.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["demo", "--backend", "tensorflow"], "invalid choice: 'tensorflow' (choose from 'numpy'"),
    (["train", "--backend", "numpy", "mxnet"], "invalid choice: 'mxnet' (choose from 'all'"),
    (["--backend", "foo"], "invalid choice: 'foo'"),
    (["frobnicate"], "invalid choice: 'frobnicate' (choose from 'demo', 'train', 'info'"),
    (["train", "--epochs", "0"], "argument --epochs: must be a positive integer, got 0"),
    (["train", "--epochs", "2.5"], "argument --epochs: '2.5' is not an integer"),
    (["train", "--lr", "-0.1"], "argument --lr: must be a positive finite number"),
    (["train", "--lr", "inf"], "argument --lr: must be a positive"),
    (["train", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["--backend", "numpy", "demo"], "put --backend after the command"),
])
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    p = run(*args)
    assert p.returncode == 2
    assert message in p.stderr
    assert p.stderr.startswith("usage: xcorr")


def test_one_epoch_has_no_later_epochs_to_time() -> None:
    p = run("train", "--backend", "numpy", "--epochs", "1")
    assert p.returncode == 0, p.stderr
    row = next(line for line in p.stdout.splitlines() if line.startswith("numpy "))
    assert "nan" not in row and re.search(r" s +- +\[\[", row), row


def test_diverging_lr_exits_1_naming_the_epoch() -> None:
    p = run("train", "--backend", "numpy", "--lr", "5", "--epochs", "200")
    assert p.returncode == 1
    assert re.search(r"^xcorr: error: the loss grew from .* at epoch 3 with lr=5: .*use a "
                     r"smaller lr, e\.g\. lr=0\.01$", p.stderr, re.M), p.stderr


@pytest.mark.skipif(unavailable("cupy") is None, reason="needs a backend that cannot run here; "
                    "cupy can")
def test_unavailable_backend_exits_1_saying_why() -> None:
    p = run("train", "--backend", "cupy")
    assert p.returncode == 1
    assert p.stderr.startswith("xcorr: error: backend 'cupy'")


def test_plot_without_matplotlib_says_how_to_install(tmp_path: Path) -> None:
    blocker = tmp_path / "matplotlib"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(tmp_path), os.environ.get("PYTHONPATH")]))}
    p = run("train", "--backend", "numpy", "--plot", str(tmp_path / "x.png"), env=env)
    assert p.returncode == 1
    assert 'pip install "xcorr[plot]"' in p.stderr
    assert not (tmp_path / "x.png").exists()
