"""``gradbox export MODEL --format onnx --out FILE``: a model file in another format.

The work is ``gradbox.onnx.export_model_file`` (the model file's standardisation goes into the
graph; outputs ``logits`` and ``probabilities``); this module only parses flags and prints.
"""
from __future__ import annotations

from .main import add_common

__all__ = ["cmd_export", "register"]


def register(sub) -> None:
    p = sub.add_parser("export", help="write a model file as ONNX (needs gradbox[onnx])",
                       description="Write MODEL as an ONNX graph that takes the same raw inputs as `gradbox "
                                   "predict` (the stored standardisation is in the graph) and outputs logits "
                                   "and probabilities, with a dynamic batch dimension.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="output format (default onnx)")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write (atomically)")
    p.add_argument("--opset", type=int, metavar="N", help="ONNX opset, 13 or newer (default 17)")
    add_common(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from ..onnx import export_model_file

    summary = export_model_file(args.model, args.out, opset=args.opset)
    if not args.quiet:
        print(summary)
    return 0
