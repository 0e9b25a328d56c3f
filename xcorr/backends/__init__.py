"""One module per framework, each with the same surface (see ``_numpy.py`` for the contract).

``NAME``, ``METHODS``, ``costs()`` (cost-model constants by dtype width), ``version()``,
``devices()``, ``unavailable_reason()``, ``asarray(obj)``, ``kind(arr)``, ``promote(x, k)``,
``pad(x, (top, bottom, left, right))``, ``all_finite(x, k)`` (True/False, None when the
values are traced), ``corr2d_valid(x, k, method)`` and ``sse_value_and_grad(x, y, k, b)``
for the trainer.  Backends that can be traced also offer ``guarded_fft(x, k)``.
Modules are imported by ``xcorr._dispatch`` on first use, never by ``import xcorr``.
"""
