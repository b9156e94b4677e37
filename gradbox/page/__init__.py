"""Self-contained HTML pages that walk through backprop box by box, in English and Korean.

* ``explain_page(model, X, y, lang="en"|"ko")``: one iteration of gradient descent on a
  batch, forward and backward layer by layer, with the analytic gradient beside a
  numerical one and the update (``build_explain_page`` returns an ``ExplainPage`` with
  ``save`` and ``_repr_html_``; ``write_explain_page`` writes it atomically).
* ``graph_page(example, lang)``: the notes' scalar graphs (``purchase``,
  ``purchase-simple``, ``gates``, ``mlp``), one gate at a time.

``GradNormHistory`` is a training callback recording per-parameter gradient norms per epoch,
which the explain page plots beside the loss curves.

Pages inline their CSS, script and numbers: no CDN, no server, no network.
"""
from .explain_page import ExplainPage, build_explain_page, explain_page, write_explain_page
from .graph_page import GraphPage, build_graph_page, graph_page, write_graph_page
from .history import GradNormHistory

__all__ = ["ExplainPage", "build_explain_page", "explain_page", "write_explain_page",
           "GraphPage", "build_graph_page", "graph_page", "write_graph_page", "GradNormHistory"]
