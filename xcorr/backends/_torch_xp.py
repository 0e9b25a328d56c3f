"""The few NumPy-named array functions xcorr's operations use, for torch tensors.

NumPy, CuPy, JAX (``jax.numpy``) and Dask already offer these names; torch spells some
differently (``dim=``, ``movedim``, ``cat``).  Each function here is a thin rename, so
autograd and ``torch.compile`` see plain torch operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

Tensor = torch.Tensor

abs = torch.abs  # noqa: A001 - the NumPy name
sqrt = torch.sqrt
square = torch.square
maximum = torch.maximum
minimum = torch.minimum
where = torch.where
einsum = torch.einsum
matmul = torch.matmul
isfinite = torch.isfinite
isnan = torch.isnan
zeros_like = torch.zeros_like
ones_like = torch.ones_like
real = torch.real
conj = torch.conj_physical
trunc = torch.trunc
zeros = torch.zeros
imag = torch.imag
round = torch.round  # noqa: A001 - the NumPy name
frexp = torch.frexp
ldexp = torch.ldexp


def _dims(axis: int | Sequence[int] | None) -> Any:
    return axis if axis is None or isinstance(axis, int) else tuple(axis)


def sum(a: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False,  # noqa: A001
        dtype: torch.dtype | None = None) -> Tensor:
    if axis is None:
        return torch.sum(a, dtype=dtype)
    return torch.sum(a, dim=_dims(axis), keepdim=keepdims, dtype=dtype)


def mean(a: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False,
         dtype: torch.dtype | None = None) -> Tensor:
    if axis is None:
        return torch.mean(a, dtype=dtype)
    return torch.mean(a, dim=_dims(axis), keepdim=keepdims, dtype=dtype)


def min(a: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False  # noqa: A001
        ) -> Tensor:
    if axis is None:
        return torch.amin(a)
    return torch.amin(a, dim=_dims(axis), keepdim=keepdims)


def any(a: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False  # noqa: A001
        ) -> Tensor:
    if axis is None:
        return torch.any(a)
    return torch.any(a, dim=_dims(axis), keepdim=keepdims)


def all(a: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False  # noqa: A001
        ) -> Tensor:
    if axis is None:
        return torch.all(a)
    return torch.all(a, dim=_dims(axis), keepdim=keepdims)


def clip(a: Tensor, a_min: Any, a_max: Any) -> Tensor:
    return torch.clip(a, a_min, a_max)


def max(a: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False  # noqa: A001
        ) -> Tensor:
    if axis is None:
        return torch.amax(a)
    return torch.amax(a, dim=_dims(axis), keepdim=keepdims)


def cumsum(a: Tensor, axis: int) -> Tensor:
    return torch.cumsum(a, dim=axis)


def moveaxis(a: Tensor, source: Any, destination: Any) -> Tensor:
    return torch.movedim(a, source, destination)


def flip(a: Tensor, axis: int | Sequence[int]) -> Tensor:
    dims = (axis,) if isinstance(axis, int) else tuple(axis)
    if a.is_floating_point() and a.element_size() == 1:  # float8: torch has no flip for them
        return torch.flip(a.view(torch.uint8), dims=dims).view(a.dtype)
    return torch.flip(a, dims=dims)


def reshape(a: Tensor, shape: Sequence[int]) -> Tensor:
    return torch.reshape(a, tuple(shape))


def concatenate(arrays: Sequence[Tensor], axis: int = 0) -> Tensor:
    return torch.cat(list(arrays), dim=axis)


def stack(arrays: Sequence[Tensor], axis: int = 0) -> Tensor:
    return torch.stack(list(arrays), dim=axis)


def take(a: Tensor, indices: Any, axis: int) -> Tensor:
    idx = torch.as_tensor(indices, device=a.device)
    return torch.index_select(a, axis % a.ndim, idx)


def broadcast_to(a: Tensor, shape: Sequence[int]) -> Tensor:
    return a.expand(*shape)


def tensordot(a: Tensor, b: Tensor, axes: int = 2) -> Tensor:
    return torch.tensordot(a, b, dims=axes)
