"""The ``xcorr bench`` command: its options, and the run that ties suites, clock and report.

By default the results go to a fresh folder, ``bench/out/<UTC time>/`` under the current
directory (printed at the end), so a run never overwrites earlier results; ``--out DIR``
writes elsewhere, and refuses a folder that already holds results unless ``--force`` is given
(that is how the committed ``bench/results`` is refreshed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .. import BACKENDS, BackendUnavailableError, _dispatch
from .._argtypes import positive
from .cases import Grid
from .machine import (
    BUSY_HINT,
    DTYPES,
    Context,
    busy,
    copy_bandwidth,
    cpu_model,
    fix_threads,
    fresh_copy_bandwidth,
    installed,
    matmul_peak,
    versions,
)
from .report import json_safe, markdown, plot
from .suites import SUITES
from .timing import Options, run_cells

DEFAULT_OUT = Path("bench/out")


def peer_keys() -> list[str]:
    """Every ``--peers`` name of every suite (a suite lists them all, installed or not)."""
    ctx = Context(threads=1, backends=())
    return list(dict.fromkeys(p.key for s in SUITES.values() for p in s.peers(ctx)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``xcorr bench``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser (or subcommand parser) to add them to.

    Examples
    --------
    >>> import argparse
    >>> from xcorr import benchmark
    >>> parser = argparse.ArgumentParser(prog="xcorr bench")
    >>> benchmark.add_arguments(parser)
    >>> args = parser.parse_args(["--quick", "--suite", "corr2d", "--backends", "numpy"])
    >>> args.quick, args.suite, args.backends, args.out
    (True, ['corr2d'], ['numpy'], None)
    """
    parser.add_argument("--suite", nargs="+", choices=SUITES, metavar="NAME",
                        help="run only these suites (default: all): " + ", ".join(SUITES))
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, metavar="NAME",
                        help="benchmark only these backends; each must be able to run here "
                        "(default: every backend that can run here)")
    parser.add_argument("--peers", nargs="+", choices=peer_keys(), metavar="NAME",
                        help="compare with these peers only (default: all that are "
                        "installed): " + ", ".join(peer_keys()))
    parser.add_argument("--quick", action="store_true",
                        help="a tiny grid (64², 128²; k3, k11; float32) that takes about a "
                        "minute")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder for bench.json, bench.md and the plots (default: a new "
                        f"folder {DEFAULT_OUT}/<UTC time>/ under the current directory, "
                        "printed at the end); a folder that already holds results needs "
                        "--force")
    parser.add_argument("--force", action="store_true",
                        help="let --out overwrite the results already in DIR (e.g. "
                        "--out bench/results --force refreshes the committed ones)")
    parser.add_argument("--sizes", nargs="+", type=positive(int), metavar="N",
                        help="image sizes N (N×N) instead of the corr2d suite's grid (surface: "
                        "the largest N; conv2d, pool2d and ncc time fixed shapes)")
    parser.add_argument("--kernels", nargs="+", type=positive(int), metavar="K",
                        help="kernel sizes K (K×K) instead of the corr2d suite's grid")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES,
                        help="dtypes of the corr2d suite's grid")
    parser.add_argument("--batch", nargs=3, type=positive(int), action="append",
                        metavar=("B", "H", "W"),
                        help="shape of a batched case of the corr2d suite, repeatable "
                        "(default: (8, 28, 28) and (8, 512, 512))")
    parser.add_argument("--threads", type=positive(int), default=os.cpu_count() or 1,
                        help="threads for torch, Numba, OpenCV and the SciPy FFT (default: "
                        "all CPUs)")
    parser.add_argument("--max-call", type=positive(float), default=1.5, metavar="SECONDS",
                        help="skip a case whose call is estimated to take longer (default 1.5)")
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNGs")
    parser.add_argument("--jax-sync-dispatch", action="store_true",
                        help="run JAX's CPU computations on the calling thread "
                        "(jax_cpu_enable_async_dispatch=False, set before JAX starts; "
                        "recorded in the report): on VMs whose idle cores halt, the "
                        "hand-off to JAX's dispatch thread costs ~30-70 µs per call")


def output_dir(out: Path | None, force: bool, files: Sequence[str],
               now: datetime.datetime) -> Path:
    """The folder to write to, created: ``out``, or a fresh ``bench/out/<time>`` folder.

    Raises ``ValueError`` when ``out`` already holds one of ``files`` and ``force`` is false,
    before anything is measured.
    """
    if out is None:
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        for n in range(1000):
            path = DEFAULT_OUT / (stamp if n == 0 else f"{stamp}-{n}")
            try:
                path.mkdir(parents=True)
            except FileExistsError:
                continue
            return path
        raise ValueError(f"no fresh folder for {stamp} under {DEFAULT_OUT}; pass --out DIR")
    held = [name for name in files if (out / name).exists()]
    if held and not force:
        raise ValueError(f"{out} already holds benchmark results ({', '.join(held)}); pass "
                         "--force to overwrite them, or leave out --out to write to a fresh "
                         f"folder under {DEFAULT_OUT}/")
    out.mkdir(parents=True, exist_ok=True)
    return out


def chosen_backends(asked: Sequence[str] | None, notes: list[str]) -> list[str]:
    """The backends to time: those asked for, each of which must load, or all that can run.

    Raises ``BackendUnavailableError`` (the command exits 1) for an asked-for backend that
    cannot run here, saying why; without ``--backends`` such backends are noted and skipped.
    """
    names = []
    for name in asked or BACKENDS:  # load only what was asked for: imports are slow
        try:
            _dispatch.load(name)
        except BackendUnavailableError as exc:
            if asked:
                raise BackendUnavailableError(
                    f"{exc}. Leave it out of --backends, or give no --backends to time every "
                    "backend that can run here (xcorr info says why each cannot)") from None
            notes.append(f"backend {name} skipped: {exc}")
        else:
            names.append(name)
    return list(dict.fromkeys(names))


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Run the benchmark described by ``args``; write JSON, Markdown and PNGs; return 0.

    Parameters
    ----------
    args : argparse.Namespace
        The options of :func:`add_arguments`, parsed.
    out : text stream, optional
        Where the progress, the targets and the folder written are printed (default:
        ``sys.stdout``).

    Returns
    -------
    int
        0.  Wrong results, crashes and skipped cells are recorded in the report, not raised.

    Raises
    ------
    ValueError
        ``--out`` names a folder that already holds results and ``--force`` was not given
        (before anything is measured).
    BackendUnavailableError
        A backend given with ``--backends`` cannot run here.

    Examples
    --------
    A smallest run (one image size, one kernel, NumPy against ``correlate2d``):

    >>> import argparse, io, pathlib, tempfile
    >>> from xcorr import benchmark
    >>> parser = argparse.ArgumentParser()
    >>> benchmark.add_arguments(parser)
    >>> folder = tempfile.mkdtemp()
    >>> args = parser.parse_args(["--suite", "corr2d", "--quick", "--backends", "numpy",
    ...                           "--peers", "correlate2d", "--sizes", "32", "--kernels", "3",
    ...                           "--no-plot", "--out", folder])
    >>> benchmark.run(args, io.StringIO())
    0
    >>> sorted(p.name for p in pathlib.Path(folder).iterdir())
    ['bench.json', 'bench.md']
    """
    out = out or sys.stdout
    start, load_before = time.perf_counter(), os.getloadavg()
    now = datetime.datetime.now(datetime.timezone.utc)
    suites = [SUITES[name] for name in dict.fromkeys(args.suite or SUITES)]  # each once
    files = ["bench.json", "bench.md"] + ([] if args.no_plot else
                                          [s.plot_file for s in suites if s.plot_file])
    notes: list[str] = []
    if args.jax_sync_dispatch:  # before chosen_backends, whose check may start JAX
        notes.append(jax_sync_dispatch())
    names = chosen_backends(args.backends, notes)  # may refuse: before any folder is made
    folder = output_dir(args.out, args.force, files, now)
    quick = args.quick
    grid = Grid(quick, *(tuple(v) if v else None for v in (
        args.sizes, args.kernels, args.dtypes, [tuple(b) for b in args.batch or ()])))
    opts = Options(threads=args.threads, max_call=args.max_call,
                   target=0.05 if quick else 0.5, min_repeat=3 if quick else 5,
                   max_repeat=7 if quick else 25, min_loop=2e-3 if quick else 2e-2)
    ctx = Context(threads=args.threads, backends=names)
    wanted = set(args.peers or peer_keys())
    peers = [p for s in suites for p in s.peers(ctx) if p.key in wanted]
    torch_used = installed("torch") and ("torch" in names or any(
        "torch" in p.requires for p in peers))
    cv2_used = installed("cv2") and any("cv2" in p.requires for p in peers)
    threads = fix_threads(args.threads, torch_used, cv2_used)
    if "jax" in sys.modules:  # the default (True) hands each call to a dispatch thread
        threads["jax_cpu_enable_async_dispatch"] = bool(
            sys.modules["jax"].config.values.get("jax_cpu_enable_async_dispatch", True))

    if busy(load_before[0]):
        print(f"warning: load average {load_before[0]:.1f} on {os.cpu_count()} CPUs; "
              f"{BUSY_HINT}", file=out, flush=True)
    print(f"xcorr bench: suites {', '.join(s.name for s in suites)}; backends "
          f"{', '.join(names) or 'none'}; measuring the matmul peak and copy bandwidth",
          file=out, flush=True)
    matmul_n, copy_mib = (512, 64) if quick else (2048, 256)
    peaks = matmul_peak(matmul_n, torch_used)
    copy_bps = copy_bandwidth(copy_mib * 2**20, torch_used)
    fresh_bps = fresh_copy_bandwidth(64 * 2**20)  # the size of 4096² float32 (see targets)

    records: list[dict[str, Any]] = []
    extras: dict[str, Any] = {}
    for suite in suites:
        cells = suite.cells(grid)
        impls, suite_notes = suite.impls(ctx, cells, wanted)
        notes += suite_notes + suite.notes(ctx, cells, [p for p in suite.peers(ctx)
                                                         if p.key in wanted])
        print(f"suite {suite.name}: {len(cells)} cells × {len(impls)} implementations",
              file=out, flush=True)
        rng = np.random.default_rng(0)
        records += run_cells(impls, cells, lambda c, s=suite, rng=rng: s.inputs(c, rng),
                             suite.reference, opts, peaks, out, suite.check)
        extras.update(suite.extras(ctx, opts))

    result: dict[str, Any] = {
        "meta": {"date": now.isoformat(timespec="seconds"), "cpu": cpu_model(),
                 "platform": platform.platform(), "versions": versions(), "threads": threads,
                 "peak_gflops": peaks, "copy_bytes_per_s": copy_bps,
                 "fresh_copy_bytes_per_s": fresh_bps,
                 "roofline_sizes": {"matmul": matmul_n, "copy_mib": copy_mib},
                 "suites": [s.name for s in suites], "backends": names, "quick": quick,
                 "command": " ".join(sys.argv), "grid": {k: v for k, v in vars(grid).items()},
                 "options": dict(vars(opts)),
                 "loadavg_before": [round(v, 2) for v in load_before],
                 "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                 "notes": notes},
        "records": records, **extras,
    }
    result["targets"] = [
        {"suite": s.name, **t}
        for s in suites for t in s.targets([r for r in records if r["suite"] == s.name], result)]
    result["meta"]["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    result["meta"]["wall_s"] = time.perf_counter() - start
    written = ["bench.json", "bench.md"]
    if not args.no_plot:
        for s in suites:
            if s.plot_file:
                why = plot([r for r in records if r["suite"] == s.name], folder / s.plot_file,
                           s.title)
                if why:
                    notes.append(why)
                else:
                    written.append(s.plot_file)
    for s in suites:  # --force: no plot of an earlier run left beside these results
        if s.plot_file and s.plot_file not in written:
            (folder / s.plot_file).unlink(missing_ok=True)
    text = json.dumps(json_safe(result), indent=1, allow_nan=False)
    (folder / "bench.json").write_text(text + "\n")
    (folder / "bench.md").write_text(markdown(result, suites))
    print("\ntargets (noisy on a busy machine; see bench.md):", file=out)
    for t in result["targets"]:
        print(f"  {t['result']:<5} {t['target']}: {t['subject']}: {t['measured']}", file=out)
    print(f"wrote {', '.join(written)} in {result['meta']['wall_s']:.0f} s to {folder}/",
          file=out)
    return 0


def jax_sync_dispatch() -> str:
    """Ask JAX to run CPU computations on the calling thread; return a line for the report.

    Only ``xcorr bench --jax-sync-dispatch`` calls it: the library never changes a
    framework's settings.  JAX reads the setting when its CPU client starts, so a process
    that has already run JAX on the CPU keeps asynchronous dispatch (the line says so).
    """
    if not installed("jax"):
        return "--jax-sync-dispatch: JAX is not installed"
    import jax

    try:  # JAX's own (private) record of whether its clients have started
        from jax._src.xla_bridge import backends_are_initialized as started_yet
    except ImportError:  # another JAX: assume not, as a fresh bench process is
        def started_yet() -> bool:
            return False

    started = started_yet()
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    return ("--jax-sync-dispatch: JAX's CPU client had already started, so its dispatch "
            "stays asynchronous" if started else "JAX CPU dispatch: synchronous "
            "(jax_cpu_enable_async_dispatch=False, from --jax-sync-dispatch)")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m xcorr.benchmark [options]``: the same command as ``xcorr bench``.

    Parameters
    ----------
    argv : sequence of str, optional
        The options (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status of :func:`xcorr.cli.main`: 0, or 1 after an error message.

    Raises
    ------
    SystemExit
        From ``argparse``: 2 for a bad command line, 0 after ``--help``.

    Examples
    --------
    A folder that holds results is refused before anything runs (the message goes to
    stderr):

    >>> import pathlib, tempfile
    >>> from xcorr import benchmark
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "bench.json").write_text("{}")
    >>> benchmark.main(["--backends", "numpy", "--out", str(folder)])
    1
    """
    from ..cli import main as xcorr_main

    return xcorr_main(["bench", *(sys.argv[1:] if argv is None else argv)])
