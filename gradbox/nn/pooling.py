"""Pooling layers: ``MaxPool2d`` and ``AvgPool2d`` (NCHW), as PyTorch's."""
from __future__ import annotations

from . import _conv_functional as CF
from ._conv_functional import _int_or_pair
from .module import _Stateless


class _Pool2d(_Stateless):
    function = None
    _parameter_constraints = {"kernel_size": _int_or_pair(1), "stride": _int_or_pair(1), "padding": _int_or_pair(0)}

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = CF._pool_geometry(kernel_size, stride, padding,
                                                                         type(self).__name__)
        self._checked = ((self.kernel_size, self.stride, self.padding),) * 2

    def get_config(self) -> dict:
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding)}

    def _window(self) -> tuple:
        """(kernel, stride, padding) as pairs: as checked when last set (``__init__``, or an attribute changed
        since).

        NOTE: the three pairs checked again on every call cost 5-6 µs, two calls a LeNet step."""
        raw = (self.kernel_size, self.stride, self.padding)
        if raw != self._checked[0]:
            self._checked = (raw, CF._pool_geometry(*raw, f"{type(self).__name__}(kernel_size={self.kernel_size})"))
        return self._checked[1]

    def forward(self, x):
        who = f"{type(self).__name__}(kernel_size={self.kernel_size})"
        kernel, stride, padding = self._window()
        x = CF._check_image(x, who)
        CF._check_window(x.shape, kernel, padding, who)
        return type(self).function.apply(x, kernel=kernel, stride=stride, padding=padding)

    def output_shape(self, input_shape: tuple) -> tuple:
        """(C, H, W) of one sample's output for one sample's input shape (C, H, W)."""
        c, h, w = input_shape
        return (c, CF.conv_output_size(h, self.kernel_size[0], self.stride[0], self.padding[0]),
                CF.conv_output_size(w, self.kernel_size[1], self.stride[1], self.padding[1]))

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max over each kh x kw window: ``A = max(window)``, one box.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size`` (non-overlapping windows).
    padding : int or (int, int)
        Implicit -inf on each side, at most half the kernel.

    Shape
    -----
    - Input: (N, C, H, W)
    - Output: (N, C, OH, OW) with OH = ⌊(H + 2·padding - kh)/stride⌋ + 1 (likewise OW)

    Notes
    -----
    The cache is each window's argmax; backward sends dA to that input only (the course's
    ``create_mask_from_window``) and sums where windows overlap.

    Examples
    --------
    >>> import gradbox as gb, numpy as np
    >>> gb.nn.MaxPool2d(2)(np.arange(16.0, dtype=np.float32).reshape(1, 1, 4, 4)).data[0, 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """

    function = CF.MaxPool2dFunction


class AvgPool2d(_Pool2d):
    """Mean over each kh x kw window, zero padding counted (PyTorch's ``count_include_pad=True``).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
        Zeros on each side, at most half the kernel.

    Shape
    -----
    - Input: (N, C, H, W)
    - Output: (N, C, OH, OW) with OH = ⌊(H + 2·padding - kh)/stride⌋ + 1 (likewise OW)

    Notes
    -----
    Backward gives every input of a window dA/(kh·kw) (the course's ``distribute_value``).

    Examples
    --------
    >>> import gradbox as gb, numpy as np
    >>> gb.nn.AvgPool2d(2)(np.arange(16.0, dtype=np.float32).reshape(1, 1, 4, 4)).data[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """

    function = CF.AvgPool2dFunction
