"""The ``xcorr`` command: the seed notebook, side-by-side training, and backend information.

``xcorr`` alone prints the seed notebook's examples; ``xcorr demo`` replays the whole notebook,
``xcorr train`` learns the edge kernel on several backends side by side, ``xcorr info`` says
which backends can run here.  Each command is a pair of functions in ``COMMANDS``: one adds
its options to an ``argparse`` parser, the other runs it and returns the exit status.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TextIO

import numpy as np

from . import BACKENDS, BackendUnavailableError, benchmark, corr2d
from ._argtypes import non_negative_int, positive
from ._dispatch import load
from ._interop import host_copy

# -- the seed notebook ------------------------------------------------------------------------


def edge_image() -> np.ndarray:
    """The seed's 6x8 image: ones, with columns 2..5 black (zero)."""
    x = np.ones((6, 8))
    x[:, 2:6] = 0
    return x


EDGE_KERNEL = np.array([[1.0, -1.0]])


def seed_examples(backend: str | None = None) -> list[tuple[str, Any]]:
    """The examples of the seed notebook, as ``(title, array)``, computed on ``backend``."""
    x = edge_image()
    return [
        ("corr2d(X, K) for the 3x3 example", corr2d(np.arange(9).reshape(3, 3),
                                                     [[0, 1], [2, 3]], backend=backend)),
        ("the edge image X (columns 2..5 black)", x),
        ("its vertical edges corr2d(X, [[1, -1]])", corr2d(x, EDGE_KERNEL, backend=backend)),
        ("the transposed image has none: corr2d(X.T, K)", corr2d(x.T, EDGE_KERNEL,
                                                                  backend=backend)),
    ]


def _print_examples(backend: str | None, out: TextIO) -> None:
    for title, value in seed_examples(backend):
        print(f"{title}:\n{host_copy(value)}\n", file=out)


# -- commands ---------------------------------------------------------------------------------


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="where to compute (default: numpy, which needs no optional extra)")


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from .train import learn_kernel

    print(f"The seed notebook (d2l 'Convolutions for Images') on backend {args.backend}\n",
          file=out)
    _print_examples(args.backend, out)
    x = edge_image()
    y = corr2d(x, EDGE_KERNEL, backend=args.backend)
    lr, epochs = 3e-2, 10
    print(f"learn a 1x2 kernel from X and its edges (gradient descent, lr {lr:g}, "
          f"{epochs} epochs):", file=out)

    def report(epoch: int, loss: float) -> None:
        if epoch % 2 == 0:
            print(f"epoch {epoch}, loss {loss:.3f}", file=out)

    result = learn_kernel(x, y, (1, 2), backend=args.backend, lr=lr, epochs=epochs,
                          callback=report)
    print(f"learned kernel (the truth is [[1, -1]]):\n{host_copy(result.kernel)}", file=out)
    return 0


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", nargs="+", choices=("all", *BACKENDS), default=["all"],
                   metavar="NAME", help="'all' (default: every backend that can run here) or "
                   f"one or more of {', '.join(BACKENDS)}")
    p.add_argument("--epochs", type=positive(int), default=10, help="default: 10")
    p.add_argument("--lr", type=positive(float), default=3e-2, help="default: 0.03")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the initial kernel, the same on every backend (default: 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="precision of the data (default: float32, as the seed's PyTorch; JAX "
                   "computes float64 only when you set JAX_ENABLE_X64=1)")
    p.add_argument("--plot", metavar="FILE.png", type=_writable_file,
                   help="also write the loss curves to FILE.png (needs matplotlib: pip install "
                   "\"xcorr[plot]\")")


class _Run(NamedTuple):
    backend: str
    losses: list[float]
    kernel: np.ndarray
    seconds: float  # the whole call
    first: float  # the first epoch: includes setup such as JAX's compilation
    per_epoch: float  # median of the later epochs (NaN with one epoch)


def _train(args: argparse.Namespace, out: TextIO) -> int:
    from .train import learn_kernel

    if args.plot:
        _require_matplotlib()  # fail before training, not after
    names = _chosen_backends(args.backend)
    x = edge_image().astype(args.dtype)
    y = corr2d(x, EDGE_KERNEL.astype(args.dtype), backend="numpy")
    runs = []
    for name in names:
        load(name)  # import the framework outside the timing
        progress = _Progress(name, args.epochs)
        stamps = [time.perf_counter()]

        def step(epoch: int, loss: float, progress: _Progress = progress,
                 stamps: list[float] = stamps) -> None:
            stamps.append(time.perf_counter())  # each epoch ends with a host sync (its loss)
            progress(epoch, loss)

        try:
            result = learn_kernel(x, y, (1, 2), backend=name, lr=args.lr, epochs=args.epochs,
                                  seed=args.seed, callback=step)
            kernel = host_copy(result.kernel)  # waits for the result: part of the time
        finally:
            progress.close()
        epoch_times = np.diff(stamps)
        later = float(np.median(epoch_times[1:])) if len(epoch_times) > 1 else float("nan")
        runs.append(_Run(name, result.losses, kernel, time.perf_counter() - stamps[0],
                         float(epoch_times[0]), later))
    _print_table(runs, args, out)
    for r in runs:
        if r.kernel.dtype != np.dtype(args.dtype):
            print(f"\nnote: {r.backend} trained in {r.kernel.dtype}, not {args.dtype}: "
                  f"{_why_not(r.backend, args.dtype)}", file=out)
    if args.plot:
        _plot(runs, args)
        print(f"\nloss curves written to {args.plot}", file=out)
    return 0


def _info_args(p: argparse.ArgumentParser) -> None:
    pass


def _info(args: argparse.Namespace, out: TextIO) -> int:
    from . import __version__, backend_info

    print(f"xcorr {__version__}, Python {sys.version.split()[0]}\n", file=out)
    print(f"{'backend':<8} {'version':<16} devices", file=out)
    for name, info in backend_info().items():
        version = info["version"] or "not installed"
        where = ", ".join(map(str, info["devices"])) if info["available"] else "unavailable"
        print(f"{name:<8} {version:<16} {where}", file=out)
        if info["reason"]:
            print(f"{'':<8} why: {info['reason']}", file=out)
    return 0


class Command(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, TextIO], int]


# To add a command, write its two functions and add a line here.
COMMANDS: dict[str, Command] = {
    "demo": Command("replay the seed notebook: the examples, then learn the edge kernel",
                    _demo_args, _demo),
    "train": Command("learn the edge kernel on several backends side by side",
                     _train_args, _train),
    "info": Command("backends, versions, devices, and why any cannot run here",
                    _info_args, _info),
    "bench": Command("time every backend and method against SciPy, OpenCV, torch and JAX peers",
                     benchmark.add_arguments, benchmark.run),
}


class _PlainHelp(argparse.HelpFormatter):
    """Help as plain text: the reStructuredText markup of docstrings (``name``,
    :func:`name`) prints as the bare name."""

    def format_help(self) -> str:
        return _plain(super().format_help())


def _plain(text: str) -> str:
    return re.sub(r"(?::[\w:]+:)?`+([^`]*)`+", r"\1", text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xcorr", formatter_class=_PlainHelp,
        description=__doc__.split("\n\n")[0] + " Without a command: print the seed "
        "notebook's examples.")
    parser.add_argument("--backend", choices=BACKENDS, dest="examples_backend",
                        help="backend for the examples printed without a command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help,
                           formatter_class=_PlainHelp)
        command.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xcorr`` command with ``argv`` (default: ``sys.argv[1:]``); return the status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after ``xcorr``, e.g. ``["train", "--epochs", "30"]``; none prints the
        seed notebook's examples.

    Returns
    -------
    int
        0 on success; 1 when the command failed with a message on stderr (a backend that
        cannot run, a bad value, a diverging ``--lr``).

    Raises
    ------
    SystemExit
        From ``argparse``: status 2 for a bad command line (an unknown option, an unwritable
        ``--plot`` path), 0 after ``--help``.

    Examples
    --------
    >>> from xcorr.cli import main
    >>> main(["train", "--backend", "numpy", "--epochs", "2"])
    loss per epoch (sum of squared errors before the update; lr 0.03, seed 0, float32 data)
    epoch        numpy
        1      6.83861
        2       2.8612
    ...
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is not None and args.examples_backend is not None:
        parser.error(f"put --backend after the command: xcorr {args.command} --backend "
                     f"{args.examples_backend}")
    try:
        if args.command is None:
            _print_examples(args.examples_backend, sys.stdout)
            return 0
        return COMMANDS[args.command].run(args, sys.stdout)
    except (BackendUnavailableError, ValueError, TypeError, FloatingPointError,
            OSError) as exc:  # OSError: the plot file, where the up-front check cannot tell
        print(f"xcorr: error: {exc}", file=sys.stderr)
        return 1


# -- helpers ----------------------------------------------------------------------------------


def _writable_file(text: str) -> str:
    """An argparse type: a file path whose folder exists and is writable (checked up front,
    so that a typo does not cost a whole training run)."""
    folder = os.path.dirname(os.path.abspath(text))
    suffix = os.path.splitext(text)[1].lower().lstrip(".")
    if suffix not in _PLOT_FORMATS and not os.path.isdir(text):
        what = f"the format {suffix!r}" if suffix else "no extension"
        raise argparse.ArgumentTypeError(
            f"cannot plot into {text}: {what}; give a file name ending in one of "
            f"{', '.join('.' + f for f in sorted(_PLOT_FORMATS))}, e.g. losses.png")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a directory; give a file name, e.g. "
                                         f"{os.path.join(text, 'losses.png')}")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"cannot write {text}: the folder {folder} does not "
                                         "exist; create it first or choose another path")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: the folder {folder} is not "
                                         "writable; choose another path")
    return text


# What matplotlib's Agg, PDF, PS and SVG writers save by name (its default backends), which
# need nothing outside Python; not pgf, which needs LaTeX (and failed only after training)
_PLOT_FORMATS = frozenset({"png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif",
                           "tiff", "webp", "raw", "rgba"})


def _why_not(backend: str, dtype: str) -> str:
    """Why ``backend`` computed in another dtype than the ``dtype`` asked for."""
    if backend == "jax" and dtype == "float64":
        return ("JAX's 64-bit mode is off, and xcorr never switches it for you; set "
                "JAX_ENABLE_X64=1 (or jax.config.update('jax_enable_x64', True)) to train in "
                "float64")
    return "the backend does not compute in that dtype"


def _chosen_backends(asked: list[str]) -> list[str]:
    """The backends to train on: 'all' means those that can run (the others are listed)."""
    if "all" in asked:
        names = []
        for name in BACKENDS:
            try:
                load(name)
            except BackendUnavailableError as exc:
                print(f"skipping {name}: {exc}", file=sys.stderr)
            else:
                names.append(name)
        return names
    return list(dict.fromkeys(asked))  # unique, in the order given


class _Progress:
    """``name: epoch i/n`` on stderr while training, only when stderr is a terminal.

    Uses tqdm's bar when tqdm is installed (it is not a dependency).
    """

    def __init__(self, name: str, total: int, stream: TextIO = sys.stderr) -> None:
        self.name, self.total, self.stream = name, total, stream
        self.enabled = stream.isatty()
        self.bar: Any = None
        self.last = 0.0
        if self.enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self.bar = tqdm(total=total, desc=name, leave=False, file=stream)

    def __call__(self, epoch: int, loss: float) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            return
        now = time.monotonic()
        if now - self.last > 0.1 or epoch == self.total:  # redraw at most 10 times a second
            self.last = now
            self.stream.write(f"\r{self.name}: epoch {epoch}/{self.total}, loss {loss:.4g}")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            self.stream.write("\r\033[K")  # erase the line
            self.stream.flush()


def _print_table(runs: list[_Run], args: argparse.Namespace, out: TextIO) -> None:
    if not runs:
        print("no backend can run here; see `xcorr info`", file=out)
        return
    width = 13
    print(f"loss per epoch (sum of squared errors before the update; lr {args.lr:g}, "
          f"seed {args.seed}, {args.dtype} data)", file=out)
    print("epoch" + "".join(f"{r.backend:>{width}}" for r in runs), file=out)
    for i in range(args.epochs):
        print(f"{i + 1:>5}" + "".join(f"{r.losses[i]:>{width}.6g}" for r in runs), file=out)
    print(f"\n{'backend':<8} {'dtype':<8} {'total':>9} {'1st epoch':>10} {'then/epoch':>11}"
          "   learned kernel (truth [[1, -1]])", file=out)
    for r in runs:
        kernel = np.array2string(r.kernel, precision=6, max_line_width=10_000)
        then = f"{r.per_epoch * 1e3:>8.2f} ms" if r.per_epoch == r.per_epoch else f"{'-':>11}"
        print(f"{r.backend:<8} {r.kernel.dtype.name:<8} {r.seconds:>7.3f} s {r.first:>8.3f} s "
              f"{then}   {kernel}", file=out)
    print("(the first epoch includes each framework's one-time setup, such as JAX's "
          "compilation; then/epoch is the median of the others)", file=out)


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError('--plot needs matplotlib; install it with: pip install "xcorr[plot]"'
                         ) from None


def _plot(runs: list[_Run], args: argparse.Namespace) -> None:
    # Figure without pyplot: no GUI backend and no global state touched.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    epochs = np.arange(1, args.epochs + 1)
    for style, r in zip(("-", "--", "-.", ":", "-"), runs, strict=False):
        ax.semilogy(epochs, r.losses, style, marker=".", label=r.backend)
    ax.set(xlabel="epoch", ylabel="loss (sum of squared errors)",
           title=f"learning [[1, -1]]: lr {args.lr:g}, seed {args.seed}, {args.dtype}")
    ax.legend()
    fig.savefig(args.plot, dpi=120)
