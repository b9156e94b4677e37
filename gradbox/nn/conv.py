"""``Conv2d``: a 2-D convolution layer (NCHW, weights (out, in, kh, kw)), as PyTorch's."""
from __future__ import annotations

import numpy as np

from ..errors import NonFiniteError, all_finite, first_nonfinite
from .._validation import boolean, one_of, positive_int, validate
from ..random import resolve_rng
from ..tensor import Tensor
from . import _conv_functional as CF
from ._conv_functional import _int_or_pair
from .init import INITIALIZERS, get_initializer
from .module import Module, Parameter, _layer_dtype


_DTYPES = ("float32", "float64")


class Conv2d(Module):
    """2-D convolution over an NCHW batch: ``Z = W * X + b``, one box (im2col and one GEMM).

    Parameters
    ----------
    in_channels, out_channels : int
        The notes' n_C[l-1] and n_C[l].
    kernel_size : int or (int, int)
        f, or (kh, kw).
    stride : int or (int, int)
    padding : int, (int, int), "same" or "valid"
        Zeros added on each side of height and width. ``"valid"`` is 0; ``"same"`` pads so that the output
        keeps the input's height and width (stride 1 and odd kernel sizes; stored as the pair it resolves
        to, ``(kh // 2, kw // 2)``).
    bias : bool
        Learn one bias per output channel (initialised to zero).
    dtype : float32 or float64
    init : str
        ``"he_uniform"`` (default), ``"he_normal"``, ``"xavier_uniform"``, ``"xavier_normal"`` or
        ``"normal"``, with PyTorch's conv fans: fan_in = in_channels·kh·kw, fan_out = out_channels·kh·kw.
    rng : None, int or numpy.random.Generator

    Attributes
    ----------
    weight : Parameter of shape (out_channels, in_channels, kh, kw)
    bias : Parameter of shape (out_channels,) or None

    Shape
    -----
    - Input: (N, in_channels, H, W)
    - Output: (N, out_channels, OH, OW) with OH = ⌊(H + 2·padding - kh)/stride⌋ + 1 (likewise OW)

    Notes
    -----
    Forward: ``cols = im2col(X)``, ``Z = W·cols + b`` (W reshaped to (out, in·kh·kw)).
    Backward: ``dW = dZ·colsᵀ``, ``db = Σ dZ``, ``dcols = Wᵀ·dZ`` then ``dX = col2im(dcols)``;
    dX is skipped when the input needs no gradient (the first layer).

    Examples
    --------
    >>> import gradbox as gb, numpy as np
    >>> conv = gb.nn.Conv2d(1, 6, 5, padding=2, rng=0)
    >>> conv(np.zeros((2, 1, 28, 28), dtype=np.float32)).shape
    (2, 6, 28, 28)
    """

    _parameter_constraints = {
        "in_channels": positive_int, "out_channels": positive_int, "kernel_size": _int_or_pair(1),
        "stride": _int_or_pair(1), "padding": CF._CONV_PADDING, "bias": boolean, "dtype": one_of(*_DTYPES),
        "init": one_of(*sorted(INITIALIZERS)),
    }

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 dtype=np.float32, init="he_uniform", rng=None):
        super().__init__()
        who = "Conv2d"
        args = validate(who, {"in_channels": in_channels, "out_channels": out_channels, "init": init},
                        self._parameter_constraints)
        self.in_channels, self.out_channels = args["in_channels"], args["out_channels"]
        self.kernel_size = CF._pair(kernel_size, "kernel_size", who, 1)
        self.stride = CF._pair(stride, "stride", who, 1)
        self.padding = CF._conv_padding(padding, self.kernel_size, self.stride, who)
        dtype = _layer_dtype(dtype, who)
        self.init = init
        self.weight = Parameter(np.empty((self.out_channels, self.in_channels) + self.kernel_size, dtype=dtype))
        # NOTE: nn.init uses PyTorch's conv fans: fan_in = in·kh·kw, fan_out = out·kh·kw
        get_initializer(init)(self.weight, rng=resolve_rng(rng))
        self.bias = Parameter(np.zeros(self.out_channels, dtype=dtype)) if bias else None

    def get_config(self) -> dict:
        config = {
            "in_channels": self.in_channels, "out_channels": self.out_channels,
            "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
            "bias": self.bias is not None, "dtype": self.weight.dtype.name,
        }
        if self.init != "he_uniform":
            config["init"] = self.init
        return config

    @classmethod
    def state_specs(cls, config):
        config = cls.check_config(config)
        kh, kw = CF._pair(config["kernel_size"], "kernel_size", cls.__name__, 1)
        dtype = np.dtype(config.get("dtype", "float32"))
        o = config["out_channels"]
        return [("weight", (o, config["in_channels"], kh, kw), dtype)] + \
            ([("bias", (o,), dtype)] if config.get("bias", True) else [])

    def _who(self) -> str:
        return f"Conv2d(in_channels={self.in_channels})"

    def forward(self, x):
        x = self._checked(x)
        inputs = (x, self.weight) if self.bias is None else (x, self.weight, self.bias)
        return CF.Conv2dFunction.apply(*inputs, stride=self.stride, padding=self.padding)

    def _forward_max_pool(self, x, pool, relu=None):
        """``pool(self(x))`` for a ``MaxPool2d``, then ``relu`` of that when given (a ``ReLU``): as one box
        (``Conv2dMaxPoolFunction``: the same values and gradients) while the pooling's windows tile its input,
        else the layers one after the other; ``nn.Sequential``'s fused layers."""
        x = self._checked(x)
        tiling = self._tiling_pool(x.shape, pool)
        if tiling is None:
            x = pool(self(x))
            return x if relu is None else relu(x)
        inputs = (x, self.weight) if self.bias is None else (x, self.weight, self.bias)
        return CF.Conv2dMaxPoolFunction.apply(*inputs, stride=self.stride, padding=self.padding, pool=tiling[0],
                                              relu=relu is not None)

    def _tiling_pool(self, input_shape, pool):
        """(kernel, OH, OW) when ``pool``'s windows tile this layer's output (OH, OW) for a checked input of
        ``input_shape`` (stride = kernel, no padding, the kernel within Z), else None: where the layers fuse.
        NOTE: a kernel larger than Z is left to the pooling layer, which says what is wrong, as when unfused."""
        kernel, stride, padding = pool._window()
        _, oh, ow = self.output_shape(input_shape[1:])
        if stride != kernel or padding != (0, 0) or kernel[0] > oh or kernel[1] > ow:
            return None
        return kernel, oh, ow

    @staticmethod
    def _forward_stack(units, x):
        """``units`` (``Sequential``'s fused blocks: each a Conv2d, a MaxPool2d and a ReLU or None) one after the
        other: as one box (``Conv2dStackFunction``, the same values and gradients) where their parts merge
        (``_stack_plan``: the NumPy path, a batch chunked alike in every block, pooling windows that tile),
        else block by block (``_forward_max_pool``), which also says what is wrong with a bad input."""
        first = units[0][0]
        x = first._checked(x)
        shape, blocks, specs, inputs = x.shape, [], [], [x]
        for conv, pool, relu in units:
            (kh, kw), (ph, pw) = conv.kernel_size, conv.padding
            # NOTE: an input a later block would refuse: the blocks one by one, which say what is wrong
            fits = (shape[1] == conv.in_channels and conv.weight.dtype == x.dtype and shape[2] + 2 * ph >= kh
                    and shape[3] + 2 * pw >= kw)
            tiling = conv._tiling_pool(shape, pool) if fits else None
            if tiling is None:
                blocks = None
                break
            kernel, oh, ow = tiling
            blocks.append((conv.bias is not None, conv.stride, conv.padding, kernel, relu is not None))
            specs.append((conv.weight.shape, conv.stride, conv.padding, kernel))
            inputs += [conv.weight] if conv.bias is None else [conv.weight, conv.bias]
            shape = (shape[0], conv.out_channels, oh // kernel[0], ow // kernel[1])
        plan = CF._stack_plan(x.shape, x.dtype, specs) if blocks else None
        if plan is None:
            for conv, pool, relu in units:
                x = conv._forward_max_pool(x, pool, relu)
            return x
        return CF.Conv2dStackFunction.apply(*inputs, blocks=tuple(blocks), plan=plan)

    def _checked(self, x) -> Tensor:
        """The input as a Tensor, checked: shape, channels, finite (raw arrays), the window, the dtype."""
        who = self._who()
        raw = not isinstance(x, Tensor)
        x = Tensor(np.ascontiguousarray(x)) if raw else x
        x = CF._check_image(x, who, self.in_channels)
        if raw and not all_finite(x.data):
            # NOTE: raw arrays are user data entering the graph: checked once here, as Linear does
            raise NonFiniteError(f"{who}: expected finite input, received {first_nonfinite(x.data)}")
        CF._check_window(x.shape, self.kernel_size, self.padding, who)
        if x.dtype != self.weight.dtype:
            raise TypeError(f"{who}: expected input of dtype {self.weight.dtype}, received {x.dtype} "
                            f"(convert with .astype(np.{self.weight.dtype}))")
        return x

    def output_shape(self, input_shape: tuple) -> tuple:
        """(C, H, W) of one sample's output for one sample's input shape (C, H, W)."""
        _, h, w = input_shape
        return (self.out_channels,
                CF.conv_output_size(h, self.kernel_size[0], self.stride[0], self.padding[0]),
                CF.conv_output_size(w, self.kernel_size[1], self.stride[1], self.padding[1]))

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")
