"""The cost model behind ``method="auto"``: pure arithmetic on shapes and dtypes.

Each backend measures straight lines on its own machine and keeps the constants next to
its code (``COSTS`` in ``backends/_<name>.py``)::

    direct  ≈ tap · B·Ho·Wo·kh·kw  +  tap2 · B·Ho·Wo·(kh·kw)²  +  out · B·Ho·Wo
              +  tap_call · kh·kw
    native  ≈ native_tap · B·Ho·Wo·kh·kw  +  native_out · B·Ho·Wo  +  native_fixed
    fft     ≈ point · B·N·log2(N)  +  fixed                N = sH·sW, the transform size
    overlap ≈ tile_point · P·log2(n)  +  tile_pix · P  +  tile_fixed
                                        n = bh·bw points per tile, P = n · B·nh·nw in all

The ``out`` term is the memory traffic of one pass over the output (what a 3×3 kernel is
bound by); ``tap2`` is for a loop whose cost per tap grows with its taps (XLA's one fused
loop over all of them: 0.02 ns a tap at 3×3, 0.05 at 11×11); ``tap_call`` is what each tap
costs per call whatever the size (an eager framework launches one operation per tap:
PyTorch's direct method); ``native`` is the framework's own convolution where it has one
(``native_tap`` None: never chosen; per-image kernels run as one grouped convolution at
``native_group_tap``); the ``fixed`` term is the per-call price of planning and the
kernel's own transform. Overlap-save
(``xcorr._fft.overlap_valid``) transforms ``nh × nw`` tiles of ``bh × bw`` per image;
``tile_pix`` is the work per tile point that does not grow with the tile (cutting the tiles,
the spectrum product, putting the pieces together, and the transforms' own per-point
overhead, which dominates for small tiles). Its tile is the cheapest of a few FFT-friendly
sizes (``Cost.overlap_tile``). ``auto`` takes the cheapest prediction. Integer inputs always
go direct (FFT rounding would break exactness); non-finite inputs are steered away from the
FFTs by the caller, which can look at the values.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import log2, prod

# The methods that go through the frequency domain: they round integers and spread a NaN over
# the whole output (or tile), so auto takes them only for finite floats.
SPECTRAL = ("fft", "overlap")

# Tile sides tried by Cost.overlap_tile: 2^a·{1, 3, 5} from 8 to 2048, sizes every FFT library
# handles at full speed.  A side at least the image's own is replaced by fft_len(side).
_TILE_SIDES = tuple(sorted(m << e for m in (1, 3, 5) for e in range(3, 12) if (m << e) <= 2048))
# ... and for a backend that shares its tiles among threads, 2^a·7 too (pocketfft has a
# radix-7 pass): more heights, so that the tiles come out a multiple of the threads.
_SHARED_SIDES = tuple(sorted({*_TILE_SIDES, *(7 << e for e in range(3, 9))}))


@dataclass(frozen=True)
class Cost:
    """Nanoseconds per unit for one backend and one dtype width (see module docstring)."""

    tap: float
    out: float
    point: float
    fixed: float
    tile_point: float
    tile_pix: float
    tile_fixed: float
    tap_call: float = 0.0
    native_tap: float | None = None
    native_out: float = 0.0
    native_fixed: float = 0.0
    native_group_tap: float | None = None  # per-image kernels as one grouped convolution
    tap2: float = 0.0  # direct: per output and squared tap count (see the module docstring)
    # Tiles of more points than this are transformed out of the caches, at the whole-image
    # FFT's ``point`` cost (0: every tile at the tile costs).  NumPy's overlap-save takes a
    # few tiles at a time through one core's cache, so its small tiles cost a flat ~3.3 ns
    # (float32) or ~5.4 ns (float64) a point, and only its large ones cost as the FFT does.
    tile_cache_points: int = 0

    def direct(self, batch: int, ho: int, wo: int, kh: int, kw: int) -> float:
        taps = kh * kw
        return (batch * ho * wo * ((self.tap + self.tap2 * taps) * taps + self.out)
                + self.tap_call * taps)

    def native(self, batch: int, ho: int, wo: int, kh: int, kw: int, grouped: bool = False
               ) -> float | None:
        tap = self.native_group_tap if grouped and self.native_group_tap else self.native_tap
        if tap is None:
            return None
        return batch * ho * wo * (tap * kh * kw + self.native_out) + self.native_fixed

    def fft(self, batch: int, h: int, w: int) -> float:
        n = fft_len(h) * fft_len(w)
        return self.point * batch * n * log2(max(n, 2)) + self.fixed

    def overlap(self, batch: int, h: int, w: int, kh: int, kw: int) -> float:
        return batch * self._plan(h, w, kh, kw)[0] + self.tile_fixed

    def overlap_tile(self, h: int, w: int, kh: int, kw: int, threads: int = 1
                     ) -> tuple[int, int]:
        """The overlap-save tile ``(bh, bw)`` predicted cheapest for this shape.

        ``threads > 1``: for a backend that shares the tiles among that many threads, a tile
        (or a few along a row) to a task (NumPy's overlap-save by parts).  The tiles' count
        then counts as rounded up to a multiple of ``threads``: in the last round a thread
        without a tile waits for the others.  Sides of 2^a·7 are tried too.  At 1024² with a
        64² template on two threads: strips of 224 rows (6 of them) against 256 (5, so three
        rounds), 7.6 against 8.7 ms for the whole ``match_template`` (best of 40).
        """
        return self._plan(h, w, kh, kw, threads)[1]

    def _plan(self, h: int, w: int, kh: int, kw: int, threads: int = 1
              ) -> tuple[float, tuple[int, int]]:
        """(ns per image, tile) of the cheapest tile; the batch does not change the choice."""
        key = (self, h, w, kh, kw, threads)
        best = _plans.get(key)
        if best is None:
            sides = _TILE_SIDES if threads <= 1 else _SHARED_SIDES
            # a loop, not min() of a generator: torch.compile's Dynamo traces this (fullgraph)
            for bh in _sides(h, kh, sides):
                for bw in _sides(w, kw, sides):
                    cand = (self._per_image(h, w, kh, kw, bh, bw, threads), (bh, bw))
                    best = cand if best is None or cand < best else best
            if len(_plans) > 4096:
                _plans.clear()
            _plans[key] = best
        return best

    def _per_image(self, h: int, w: int, kh: int, kw: int, bh: int, bw: int,
                   threads: int = 1) -> float:
        n = bh * bw
        tiles = ceil_div(h - kh + 1, bh - kh + 1) * ceil_div(w - kw + 1, bw - kw + 1)
        rounds = ceil_div(tiles, threads) * threads  # the tiles, as the threads' rounds see them
        if self.tile_cache_points and n > self.tile_cache_points:
            return rounds * n * self.point * log2(n)
        return rounds * n * (self.tile_point * log2(max(n, 2)) + self.tile_pix)


# Plain dict memos (on the dispatch path of every auto call): functools.lru_cache would do,
# but torch.compile's Dynamo warns about tracing through it.
_plans: dict[tuple[Cost, int, int, int, int, int], tuple[float, tuple[int, int]]] = {}
_fft_lens: dict[int, int] = {}


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _sides(n: int, k: int, sides: tuple[int, ...] = _TILE_SIDES) -> list[int]:
    """Tile sides along an axis of ``n`` points with a ``k``-tap kernel.

    The step ``b - k + 1`` must reach the halo ``k - 1`` (``tiles_by_reshape`` needs it, and
    a smaller tile wastes most of its transform anyway); one tile spanning the whole axis,
    ``fft_len(n)``, is always a choice, so the plan exists for every shape.
    """
    return [b for b in sides if 2 * (k - 1) <= b < n] + [fft_len(n)]


def fft_len(n: int) -> int:
    """Smallest 2·3·5-smooth integer >= n (a size every FFT library handles fast)."""
    best = _fft_lens.get(n)
    if best is not None:
        return best
    best = 1 << max(n - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            q = p35
            while q < n:  # multiply by 2 until the candidate reaches n
                q *= 2
            best = min(best, q)
            p35 *= 3
        p5 *= 5
    if len(_fft_lens) > 4096:
        _fft_lens.clear()
    _fft_lens[n] = best
    return best


def for_itemsize(costs: dict[int, Cost], itemsize: int) -> Cost:
    """The constants for a dtype width (the widest measured one for wider types)."""
    return costs.get(itemsize) or costs[max(costs)]


def hosted(own: dict[int, Cost], host: dict[int, Cost], methods: tuple[str, ...]
           ) -> dict[int, Cost]:
    """The cost table of a backend that hands ``methods`` (of direct, fft, overlap) to another
    one's kernels (the NumPy backend's, for torch's and JAX's CPU arrays): ``host``'s
    constants for those methods, ``own`` for the rest and for the native convolution.  (An
    overlap-save whose large tiles cost as the FFT does, ``tile_cache_points``, prices them
    at the whole-image ``point`` of whichever backend runs the FFT.)"""
    table = {}
    for size, mine in own.items():
        cost = for_itemsize(host, size)
        if "direct" not in methods:
            cost = replace(cost, tap=mine.tap, tap2=mine.tap2, out=mine.out,
                           tap_call=mine.tap_call)
        if "fft" not in methods:
            cost = replace(cost, point=mine.point, fixed=mine.fixed)
        if "overlap" not in methods:
            cost = replace(cost, tile_point=mine.tile_point, tile_pix=mine.tile_pix,
                           tile_fixed=mine.tile_fixed, tile_cache_points=mine.tile_cache_points)
        table[size] = replace(cost, native_tap=mine.native_tap, native_out=mine.native_out,
                              native_fixed=mine.native_fixed,
                              native_group_tap=mine.native_group_tap)
    return table


def choose(costs: dict[int, Cost], shape: tuple[int, ...], kshape: tuple[int, ...],
           itemsize: int, integer: bool, grouped: bool = False) -> str:
    """'direct', 'fft', 'overlap' or 'native' for a valid correlation of ``shape`` (..., H, W)
    with a ``kshape`` (..., kh, kw) kernel; ``shape``'s leading dims are the (broadcast)
    batch; ``grouped``: per-image kernels that a native layer runs as groups."""
    if integer:
        return "direct"
    cost = for_itemsize(costs, itemsize)
    h, w = shape[-2:]
    kh, kw = kshape[-2:]
    batch = prod(shape[:-2])
    ho, wo = h - kh + 1, w - kw + 1
    options = [(cost.direct(batch, ho, wo, kh, kw), "direct"),
               (cost.fft(batch, h, w), "fft"),
               (cost.overlap(batch, h, w, kh, kw), "overlap")]
    native = cost.native(batch, ho, wo, kh, kw, grouped)
    if native is not None:
        options.append((native, "native"))
    return cheapest(options)


def cheapest(options: list[tuple[float, str]]) -> str:
    """The name of the cheapest ``(cost, name)`` option (``min(options)[1]``: equal costs go
    by name).

    A loop, not ``min()``: under torch.compile with dynamic shapes (which Dynamo turns on by
    itself when a compiled function meets a second shape) the costs are symbolic, and
    Dynamo cannot trace ``min()`` of them; it guards on each comparison instead.
    """
    best, name = options[0]
    for cost, option in options[1:]:
        if cost < best or (cost == best and option < name):
            best, name = cost, option
    return name
