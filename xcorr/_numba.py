"""Optional compiled direct loop for the NumPy backend (the ``fast`` extra: Numba).

``kernel()`` returns the loop, or None when Numba is missing or disabled (``DISABLED``: set
from ``XCORR_DISABLE_NUMBA=1`` at import; tests flip it to exercise both paths).
``supports(dtype)`` says which compute dtypes it takes (float32, float64, int64); the
caller computes the others (longdouble, ...) on its pure-NumPy path.

The loop computes ``out[b, i, j] = sum_{a,c} x3[xi[b], i+a, j+c] * k3[ki[b], a, c]``: the
index maps ``xi``/``ki`` broadcast one image or one kernel over many outputs without
copying it.  Every output is ``0 + t(0,0) + t(0,1) + ...``, its taps added one at a time
in row-major order, as in the pure-NumPy fallback, so both paths agree to the last bit.
The arithmetic is plain IEEE: no fastmath, and LLVM fuses a multiply and an add into an
FMA only when told to, which Numba does not (the tests compare against the fallback's
separate ``np.multiply`` and add on random data, which an FMA would not match).

Speed comes from register blocking: the taps of a few kernel rows and the outputs being
summed stay in vector registers while each loaded input vector serves several output
rows, instead of the output row being reloaded and stored for every tap.  For that the
loop is generated as Python source per kernel shape up to ``_WIDEST``² (unrolled over
the kernel's columns, so that LLVM vectorises along the output row), compiled for a
dtype on first use and cached on disk by Numba.  Larger kernels share one generic loop.

There is one compiled loop per kernel shape and dtype, and it runs serially over a range
of blocks of output rows, with the GIL released: the caller splits a large problem into
shares for a few threads (``backends/_numpy.py``).  Numba's own ``parallel=True`` would
need a second compiled function per shape (two variants of one function share one entry
of Numba's on-disk cache, which is keyed by function and signature, not ``parallel=``:
whichever was cached first served both, the issue-13 defect), at 1-2.5 s of compilation
each (LLVM optimises the linked loop again); a parallel driver calling the loop through a
first-class function costs 40 µs per call in Numba's argument unboxing; and OpenMP's
workers spin after each region, which on a busy machine took a 0.3 ms call to 7-11 ms.
Python threads cost nothing to compile; ``xcorr._spin``'s take a share in a few µs (they
spin, but only ``XCORR_SPIN_US`` after a call, and yield the core to any runnable thread).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import threading
from collections.abc import Callable
from typing import Any

_WIDEST = 16  # kernels up to this many rows and columns get a loop of their own
_TAPS_IN_REGISTERS = 16  # taps one pass holds in vector registers (AVX-512 has 32)
_ROWS = 3  # output rows per block when a pass covers several kernel rows
_KERNEL_ROWS = 3  # at most this many kernel rows per pass
_GENERIC_COLUMNS = 8  # the generic loop (larger kernels) unrolls the kernel's columns by this
_COMPUTE_DTYPES = {("f", 4): "float32", ("f", 8): "float64", ("i", 8): "int64"}  # kind, size

DISABLED = os.environ.get("XCORR_DISABLE_NUMBA", "") not in ("", "0")
_lock = threading.Lock()  # held while generating and compiling a loop
_loops: dict[tuple[int, int, str], tuple[Any, int]] = {}  # (kh|0, kw|0, dtype) -> loop, rows
_sources: dict[tuple[int, int], dict[str, Any]] = {}  # (kh, kw) -> namespace of its source


def kernel() -> Callable[[int, int, Any], tuple[Callable[..., None], int]] | None:
    """``prepare(kh, kw, dtype) -> (loop, rows)``, or None without Numba.

    ``loop(x3, k3, xi, ki, out, zero, first, last)`` computes the output blocks ``first ..
    last-1`` of ``rows`` rows each (block ``t`` is rows ``(t % nrb)·rows ..`` of batch
    ``t // nrb``, ``nrb = ceil(Ho / rows)``), with the GIL released.  ``x3`` (Bx, H, W) and
    ``k3`` (Bk, kh, kw) are C-contiguous arrays of a dtype that ``supports``; ``xi``/``ki``
    (B,) C-contiguous intp pick the image and the kernel of each output batch; ``out``
    (B, H-kh+1, W-kw+1) of the same dtype is overwritten (it may start uninitialised);
    ``zero`` is 0 in that dtype.
    """
    return None if DISABLED or not _installed() else _prepare


@functools.cache
def _installed() -> bool:
    return importlib.util.find_spec("numba") is not None


def supports(dtype: Any) -> bool:
    """Whether the compiled loop computes in ``dtype`` (a NumPy dtype; native byte order)."""
    return (dtype.kind, dtype.itemsize) in _COMPUTE_DTYPES and dtype.isnative


def _prepare(kh: int, kw: int, dtype: Any) -> tuple[Callable[..., None], int]:
    return _loop(kh, kw, _COMPUTE_DTYPES[dtype.kind, dtype.itemsize])  # (str(dtype) takes µs)


def _signature(dtype: str) -> Any:
    """``loop(x3, k3, xi, ki, out, zero, first, last)``; images and kernels may be read-only."""
    from numba import types

    scalar = getattr(types, dtype)
    image = types.Array(scalar, 3, "C", readonly=True)
    index = types.Array(types.intp, 1, "C", readonly=True)
    return types.void(image, image, index, index, types.Array(scalar, 3, "C"), scalar,
                      types.intp, types.intp)


def _loop(kh: int, kw: int, dtype: str) -> tuple[Any, int]:
    """The serial loop for this kernel shape and dtype, and its rows per block: generated,
    then compiled by Numba (about a second) or loaded from its on-disk cache."""
    key = (kh, kw, dtype) if kh <= _WIDEST and kw <= _WIDEST else (0, 0, dtype)
    loop = _loops.get(key)
    if loop is None:
        import numba

        with _lock:
            loop = _loops.get(key)
            if loop is None:
                # one explicit signature: a writable array is taken as read-only, not
                # compiled for again
                jit = numba.njit(_signature(dtype), cache=True, nogil=True)
                rows = _plan(kh, kw)[0] if key[0] else 1
                loop = _loops[key] = (jit(_namespace(*key[:2])["loop"]), rows)
    return loop


def _namespace(kh: int, kw: int) -> dict[str, Any]:
    """Generate and execute the source of the loop for one kernel shape (0, 0: generic)."""
    namespace = _sources.get((kh, kw))
    if namespace is None:
        name = f"_corr_{kh}x{kw}" if kh else "_corr_generic"
        source = _shaped_source(name, kh, kw) if kh else _generic_source(name)
        namespace = _sources[(kh, kw)] = _exec(source, name)
    return namespace


def _exec(source: str, name: str) -> dict[str, Any]:
    namespace = {"__name__": __name__, "_tail_rows": _tail_rows()}
    # Attributed to this file so that Numba can cache the compiled code on disk: its index
    # is keyed by the function's name and bytecode and by this file's time stamp, so a
    # change to the generator (or to anything in this file) compiles afresh.
    exec(compile(source, __file__, "exec"), namespace)  # noqa: S102 - our generated code
    namespace["loop"] = namespace[name]
    return namespace


# -- code generation ---------------------------------------------------------------------------


def _plan(kh: int, kw: int) -> tuple[int, list[int]]:
    """Output rows per block, and how many kernel rows each pass over a block applies.

    A pass applying ``p`` kernel rows to ``r`` output rows loads ``r + p - 1`` input rows
    once for all ``r·p`` row pairs and keeps ``p·kw`` taps in registers.  Measured on the
    project machine (AVX-512): 3 rows × up to 3 kernel rows of up to 16 taps in all is the
    sweet spot; 4 × 2 of width 7, or 3 × 2 of width 11, made LLVM's vectoriser give up
    (scalar code, 15× slower), more taps spill registers.  One kernel row per pass shares
    nothing, so it takes one output row at a time.  (On AVX2, 16 registers, the loops
    still vectorise, with some spills.)
    """
    per_pass = max(1, min(kh, _KERNEL_ROWS, _TAPS_IN_REGISTERS // kw))
    chunks = [per_pass] * (kh // per_pass) + ([kh % per_pass] if kh % per_pass else [])
    return (_ROWS if per_pass > 1 else 1), chunks


def _head(name: str, rows: int) -> list[str]:
    """Signature, and the loop over blocks ``first .. last-1`` of ``rows`` output rows.

    Batch by batch, the image, kernel and output views made once per batch: made for every
    block, they cost ~80 ns a block (256² 3×3 float32 on one thread: 29 against 19 µs).
    """
    return [
        f"def {name}(x3, k3, xi, ki, out, zero, first, last):",
        "    nb, ho, wo = out.shape",
        "    if first >= last:",
        "        return",
        f"    nrb = (ho + {rows - 1}) // {rows}",
        "    for b in range(first // nrb, (last + nrb - 1) // nrb):",
        "        xb = x3[xi[b]]",
        "        kb = k3[ki[b]]",
        "        ob = out[b]",
        "        for t in range(max(first - b * nrb, 0), min(last - b * nrb, nrb)):",
        f"            i0 = t * {rows}",
    ]


def _pass(lines: list[str], pad: str, rows: int, krows: int, cols: int, first: bool = False,
          col0: str = "") -> None:
    """One vectorised sweep along the output rows ``i0 .. i0+rows-1``.

    Adds the taps of kernel rows ``a0 .. a0+krows-1``, columns ``col0 .. col0+cols-1``, in
    row-major order to what the rows hold, or to zero on the ``first`` pass (which only
    writes them).
    """
    emit = lines.append
    off = f"{col0} + " if col0 else ""
    for q in range(rows + krows - 1):
        emit(f"{pad}s{q} = xb[i0 + a0 + {q}]")
    for q in range(rows):
        emit(f"{pad}o{q} = ob[i0 + {q}]")
    for a in range(krows):
        for c in range(cols):
            emit(f"{pad}t{a}_{c} = kb[a0 + {a}, {off}{c}]")
    emit(f"{pad}for j in range(wo):")
    for q in range(rows):
        emit(f"{pad}    acc{q} = {'zero' if first else f'o{q}[j]'}")
        for a in range(krows):
            for c in range(cols):
                emit(f"{pad}    acc{q} += s{q + a}[j + {off}{c}] * t{a}_{c}")
    for q in range(rows):  # stores last: LLVM loads each input vector once for all rows
        emit(f"{pad}    o{q}[j] = acc{q}")


def _shaped_source(name: str, kh: int, kw: int) -> str:
    """Source of the loop for one kernel shape (see ``_plan``)."""
    rows, chunks = _plan(kh, kw)
    lines = _head(name, rows)
    lines.append(f"            if i0 + {rows} > ho:  # the last, partial block")
    lines.append("                _tail_rows(xb, kb, ob, i0, zero)")
    lines.append("                continue")
    pad = " " * 12
    lines.append(f"{pad}a0 = 0")
    _pass(lines, pad, rows, chunks[0], kw, first=True)
    full = chunks[0] * chunks.count(chunks[0])
    if full > chunks[0]:
        lines.append(f"{pad}for a0 in range({chunks[0]}, {full}, {chunks[0]}):")
        _pass(lines, pad + "    ", rows, chunks[0], kw)
    if chunks[-1] != chunks[0]:
        lines.append(f"{pad}a0 = {full}")
        _pass(lines, pad, rows, chunks[-1], kw)
    return "\n".join(lines) + "\n"


def _generic_source(name: str) -> str:
    """Source of the loop for kernels beyond ``_WIDEST``: one output row per block, passes
    of ``_GENERIC_COLUMNS`` taps, the leftover columns of a kernel row one tap at a time.

    Column offsets are built so that LLVM can prove them non-negative: otherwise Numba's
    wraparound test for negative indices stays in the inner loop, which then runs scalar
    (2-5 GF/s instead of 30-60).
    """
    n = _GENERIC_COLUMNS
    lines = _head(name, 1)
    pad = " " * 12
    lines += [f"{pad}kh, kw = kb.shape", f"{pad}ob[i0, :] = zero",
              f"{pad}for a0 in range(kh):",
              f"{pad}    c0 = 0  # (a for-range with a step hides that c0 >= 0)",
              f"{pad}    while c0 + {n} <= kw:"]
    _pass(lines, pad + " " * 8, 1, 1, n, col0="c0")
    lines += [f"{pad}        c0 += {n}",
              f"{pad}    row, src = ob[i0], xb[i0 + a0]",
              f"{pad}    for c in range(kw):",
              f"{pad}        if c >= kw - kw % {n}:",
              f"{pad}            tap = kb[a0, c]",
              f"{pad}            for j in range(wo):",
              f"{pad}                row[j] += src[j + c] * tap"]
    return "\n".join(lines) + "\n"


_tail: list[Any] = []


def _tail_rows() -> Any:
    """Rows ``i0 ..`` to the end of one image, one tap at a time (at most ``_ROWS - 1``)."""
    if not _tail:
        import numba

        @numba.njit(cache=True, nogil=True)
        def tail_rows(xb, kb, ob, i0, zero):  # pragma: no cover - compiled
            kh, kw = kb.shape
            for i in range(i0, ob.shape[0]):
                row = ob[i]
                row[:] = zero
                for a in range(kh):
                    src = xb[i + a]
                    for c in range(kw):
                        tap = kb[a, c]
                        for j in range(row.shape[0]):
                            row[j] += src[j + c] * tap

        _tail.append(tail_rows)
    return _tail[0]
