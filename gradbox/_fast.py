"""The switch of the ``fast`` extra's compiled kernels (numba, ``gradbox._conv_kernels``); the BLAS thread
choice per product (``gradbox._blas``) does not follow it. On unless ``GRADBOX_FAST=0`` (or false/no/off);
``gradbox.nn.functional.use_fast_kernels`` flips it at run time. ``"mod"`` caches the kernel module
(``nn._conv_functional._kernels``: None until first asked, False when numba is missing)."""
import os

FAST = {"wanted": os.environ.get("GRADBOX_FAST", "1").strip().lower() not in ("0", "false", "no", "off"), "mod": None}
