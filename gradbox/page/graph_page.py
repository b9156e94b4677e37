"""``graph_page``: the notes' computational graphs as a page that backpropagates one gate at a time.

The graphs are ``gradbox.viz``'s examples (``purchase``, ``purchase-simple``, ``gates``,
``mlp``), built and run by the engine; this module only lays them out as inline SVG
and steps through them. At each gate the page shows upstream gradient × local
gradient = downstream gradient with the numbers: the local gradient is the box's
own ``backward`` called with an upstream of 1 (``viz``'s way), and for array-valued
boxes the downstream gradient is the box's ``backward`` of the upstream itself.

>>> from gradbox.page import graph_page
>>> html = graph_page("purchase")
>>> "715" in html and "650" in html
True
"""
from __future__ import annotations

import numpy as np

from .. import viz
from . import _html as H
from .i18n import check_lang, t

__all__ = ["GraphPage", "build_graph_page", "graph_page", "write_graph_page", "EXAMPLES"]

EXAMPLES = viz.EXAMPLES
COL_W, ROW_H, LEFT, TOP = 240, 100, 90, 40


class GraphPage(H.Page):
    """A built graph page: ``html``, ``data`` (nodes and steps), ``save(path)``, ``_repr_html_``."""

    frame_height = 640


def _scalar_value(a):
    return float(np.asarray(a, dtype=np.float64).reshape(-1)[0])


def _layout(roots):
    """Positions {id(tensor): (x, y)}: gates by depth, leaves one column left of their first gate,
    each column placed right to left at the mean height of its consumers."""
    pos, y0 = {}, 0.0
    for root in roots:
        nodes = [n for n in viz.walk(root) if id(n) not in pos]
        ids = {id(n) for n in nodes}
        consumers = {}
        for n in nodes:
            if n._ctx is not None:
                for p in n._ctx.parents:
                    if id(p) in ids:
                        consumers.setdefault(id(p), []).append(n)
        depth = {}
        for n in nodes:  # inputs before outputs
            depth[id(n)] = 0 if n._ctx is None else 1 + max(
                (depth[id(p)] for p in n._ctx.parents if id(p) in depth), default=0)
        for n in nodes:
            if n._ctx is None and id(n) in consumers:
                depth[id(n)] = min(depth[id(c)] for c in consumers[id(n)]) - 1
        cols = {}
        for n in nodes:
            cols.setdefault(depth[id(n)], []).append(n)
        ys = {id(root): 0.0}
        for d in sorted(cols, reverse=True):
            want = []
            for n in cols[d]:
                cs = [ys[id(c)] for c in consumers.get(id(n), []) if id(c) in ys]
                # NOTE: a gate's inputs fan out around it, in the gate's own input order.
                off = 0.0
                if cs:
                    c0 = consumers[id(n)][0]
                    k = [id(p) for p in c0._ctx.parents].index(id(n))
                    off = (k - (len(c0._ctx.parents) - 1) / 2) * 0.9
                want.append((sum(cs) / len(cs) + off if cs else ys.get(id(n), 0.0), n))
            want.sort(key=lambda w: w[0])
            last = None
            for y, n in want:
                y = y if last is None or y >= last + 1.0 else last + 1.0
                ys[id(n)] = last = y
        lo = min(ys.values())
        for n in nodes:
            pos[id(n)] = (depth[id(n)] - min(depth.values()), ys[id(n)] - lo + y0)
        y0 = max(p[1] for p in pos.values()) + 1.6
    return pos


def _steps(roots):
    """The gates in backward order: for each output, right to left."""
    order, seen = [], set()
    for root in roots:
        for n in reversed(viz.walk(root)):
            if n._ctx is not None and id(n) not in seen:
                seen.add(id(n))
                order.append(n)
    return order


def _label(n):
    return n.name or ("const" if not n.requires_grad else "x")


def _gate_terms(n, scalar):
    """[(parent, upstream, local, downstream)] for gate ``n``; local is None for arrays."""
    up = n.grad
    if up is None:
        return []
    local = viz._local_grads(n._ctx, n) if scalar else None
    if not scalar:
        g = n._ctx.backward(np.asarray(up))
        down = list(g) if isinstance(g, tuple) else [g]
    out = []
    for i, p in enumerate(n._ctx.parents):
        if scalar:
            lv = None if local is None else local[i]
            dv = None if lv is None else _scalar_value(up) * lv
            out.append((p, _scalar_value(up), lv, dv))
        else:
            out.append((p, np.asarray(up), None, None if down[i] is None else np.asarray(down[i])))
    return out


def build_graph_page(example="purchase", lang="en") -> GraphPage:
    """Build the page for one of ``EXAMPLES``.

    Parameters
    ----------
    example : {"purchase", "purchase-simple", "gates", "mlp"}
    lang : {"en", "ko"}

    Returns
    -------
    GraphPage
    """
    check_lang(lang, "graph_page")
    if example not in EXAMPLES:
        raise ValueError(f"graph_page(example): expected one of {EXAMPLES}, received {example!r}")
    roots, title = viz.build_example(example)
    nodes = viz.walk(roots)
    scalar = all(n.size == 1 for n in nodes)
    pos = _layout(roots)
    ids = {id(n): f"n{i}" for i, n in enumerate(nodes)}
    gates = _steps(roots)
    step_of = {id(g): k for k, g in enumerate(gates, start=2)}  # 0: forward, 1: the seed at the output
    root_ids = {id(r) for r in roots}

    def fmt(a):
        return H.num(_scalar_value(a)) if scalar else f"{H.shape(np.shape(a))} ‖·‖ {H.num(np.linalg.norm(a))}"

    svg = []
    width = (max(p[0] for p in pos.values()) + 1) * COL_W + LEFT + 150
    height = (max(p[1] for p in pos.values()) + 1) * ROW_H + TOP + 20
    xy = {k: (LEFT + x * COL_W, TOP + y * ROW_H) for k, (x, y) in pos.items()}
    for n in nodes:  # edges first, under the nodes
        if n._ctx is None:
            continue
        terms = {id(p): term for p, *term in _gate_terms(n, scalar)}
        for i, p in enumerate(n._ctx.parents):
            (x1, y1), (x2, y2) = xy[id(p)], xy[id(n)]
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2
            svg.append(f'<line x1="{x1 + 34}" y1="{y1}" x2="{x2 - 24}" y2="{y2}" stroke="#444" stroke-width="1.4"/>')
            svg.append(f'<text x="{mx}" y="{my - 6}" font-size="13" text-anchor="middle" font-weight="600">{H.esc(fmt(p.data))}</text>')
            term = terms.get(id(p))
            if term is not None and term[2] is not None:
                up, local, down = term
                text = f"{H.num(up)} × {H.num(local)} = {H.num(down)}" if scalar else fmt(down)
                svg.append(f'<g class="gb-g" data-reveal="{step_of[id(n)]}"><text x="{mx}" y="{my + 14}" font-size="12" '
                           f'text-anchor="middle" fill="#c0392b">← {H.esc(text)}</text></g>')
    for n in nodes:
        x, y = xy[id(n)]
        if n._ctx is None:
            name = _label(n)
            w = 14 + 8 * len(name)
            svg.append(f'<g class="gb-node"><rect x="{x - w / 2 + 10}" y="{y - 14}" width="{w}" height="26" rx="6" '
                       f'fill="#eef3fb" stroke="#9bb7d9"/><text x="{x + 10}" y="{y + 4}" font-size="14" '
                       f'text-anchor="middle">{H.esc(name)}</text></g>')
            if n.grad is not None and n.requires_grad:
                last = max((step_of[id(c)] for c in nodes if c._ctx is not None and any(p is n for p in c._ctx.parents)),
                           default=1)
                svg.append(f'<g class="gb-g" data-reveal="{last}"><text x="{x + 10}" y="{y + 32}" font-size="12" '
                           f'text-anchor="middle" fill="#c0392b">∂/∂{H.esc(name)} = {H.esc(fmt(n.grad))}</text></g>')
        else:
            sym = viz._SYMBOLS.get(n._ctx.name, n._ctx.name)
            r = 22 if len(sym) <= 3 else 34
            svg.append(f'<g class="gb-node" data-cur="{step_of[id(n)]}"><circle cx="{x}" cy="{y}" r="{r}" fill="#fff6e0" '
                       f'stroke="#c9a227" stroke-width="1.5"/><text x="{x}" y="{y + 6}" font-size="{18 if r == 22 else 12}" '
                       f'text-anchor="middle">{H.esc(sym)}</text></g>')
        if id(n) in root_ids:
            name = n.name or "out"
            svg.append(f'<line x1="{x + 24}" y1="{y}" x2="{x + COL_W - 60}" y2="{y}" stroke="#444" stroke-width="1.4"/>'
                       f'<text x="{x + COL_W - 56}" y="{y + 5}" font-size="14">{H.esc(name)}</text>'
                       f'<text x="{x + (COL_W - 36) / 2}" y="{y - 6}" font-size="13" text-anchor="middle" font-weight="600">'
                       f'{H.esc(fmt(n.data))}</text>')
            if n.grad is not None:
                svg.append(f'<g class="gb-g" data-reveal="1"><text x="{x + (COL_W - 36) / 2}" y="{y + 16}" font-size="12" '
                           f'text-anchor="middle" fill="#c0392b">← {H.esc(fmt(n.grad))}</text></g>')
    figure = (f'<svg class="gb-graph" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}">'
              f'<rect width="100%" height="100%" fill="#fff"/>{"".join(svg)}</svg>')

    data = {"format": "gradbox-graph-page", "version": 1, "example": example, "lang": lang, "scalar": scalar,
            "nodes": [], "steps": [], "heat": {}}
    for n in nodes:
        entry = {"id": ids[id(n)], "name": n.name, "op": None if n._ctx is None else n._ctx.name,
                 "shape": list(n.shape)}
        if scalar:
            entry["value"] = _scalar_value(n.data)
            entry["grad"] = None if n.grad is None else _scalar_value(n.grad)
        data["nodes"].append(entry)
    sections = [f'<section class="gb-step" data-frag="step=0" data-index="0"><h2>{H.esc(t(lang, "forward"))}</h2>'
                f'<p>{H.esc(t(lang, "forward_step"))}</p><p class="note">{H.esc(t(lang, "graph_intro"))}</p></section>',
                f'<section class="gb-step" data-frag="step=1" data-index="1"><h2>{H.esc(t(lang, "backward"))}</h2>'
                f'<p>{H.esc(t(lang, "seed_step"))}'
                + "".join(f"<br>{H.esc(r.name or 'out')}: {H.esc(fmt(r.grad))}" for r in roots if r.grad is not None)
                + "</p></section>"]
    for k, g in enumerate(gates, start=2):
        op = g._ctx.name
        sym = viz._SYMBOLS.get(op, op)
        rows, sj = [], {"gate": ids[id(g)], "op": op, "inputs": []}
        for p, up, local, down in _gate_terms(g, scalar):
            pname = _label(p) if p._ctx is None else (
                p.name or f"{viz._SYMBOLS.get(p._ctx.name, p._ctx.name)} = {fmt(p.data)}")
            if scalar:
                sj["inputs"].append({"node": ids[id(p)], "upstream": up, "local": local, "downstream": down})
                eq = "—" if local is None else f"{H.num(up)} × {H.num(local)} = {H.num(down)}"
            else:
                eq = f"{fmt(up)} → {'—' if down is None else fmt(down)}"
                sj["inputs"].append({"node": ids[id(p)], "upstream_norm": float(np.linalg.norm(up)),
                                     "downstream_norm": None if down is None else float(np.linalg.norm(down))})
            rows.append(f"<tr><td>{H.esc(pname)}</td><td class=\"eq\">{H.esc(eq)}</td></tr>")
            users = sum(1 for c in nodes if c._ctx is not None for q in c._ctx.parents if q is p)
            if scalar and p._ctx is None and users > 1 and p.grad is not None:
                rows.append(f'<tr><td></td><td class="note">{H.esc(t(lang, "sum_note", name=pname, value=fmt(p.grad)))}</td></tr>')
        data["steps"].append(sj)
        head = (f"<tr><th></th><th>{H.esc(t(lang, 'upstream'))} × {H.esc(t(lang, 'local'))} = "
                f"{H.esc(t(lang, 'downstream'))}</th></tr>")
        sections.append(f'<section class="gb-step" data-frag="step={k}" data-index="{k}">'
                        f'<h2>{H.esc(t(lang, "gate_step", k=k - 1, n=len(gates), op=f"{sym} ({op})"))}</h2>'
                        f'<p class="note">{H.esc(t(lang, "chain_rule"))}</p><table>{head}{"".join(rows)}</table></section>')
    header = (f"<h1>{H.esc(t(lang, 'title_graph'))}: {H.esc(example)}</h1><p class=sub>{H.esc(title if lang == 'en' else t(lang, 'graph_intro'))}</p>"
              f"{H.controls(lang, 'keys_hint_graph')}")
    body = f'<div class="grid"><figure>{figure}</figure></div>' + "\n".join(sections)
    return GraphPage(H.document(lang, f"{t(lang, 'title_graph')}: {example}", header, body, data), data)


def graph_page(example="purchase", lang="en") -> str:
    """The page's HTML text; see ``build_graph_page``."""
    return build_graph_page(example, lang).html


def write_graph_page(path, example="purchase", lang="en") -> GraphPage:
    """Build the page and write it atomically to ``path``; returns the ``GraphPage``."""
    page = build_graph_page(example, lang)
    page.save(path)
    return page
