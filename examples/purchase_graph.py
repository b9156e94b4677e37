"""The notes' purchase graph, built from multiply and add boxes.

Two apples at 100 each and three oranges at 150 each, with 10% tax:
forward 2·100 = 200, 3·150 = 450, 200 + 450 = 650, 650·1.1 = 715; backward from 1
gives every input's gradient. Prints each value beside the notes' figure and draws
the graph with values on the arrows (black) and gradients flowing back (red).

Run::

    python examples/purchase_graph.py [--simple] [--out purchase.svg]

``--simple`` is the apples-only graph (200, 220).
"""
from __future__ import annotations

import argparse
import sys

import gradbox as gb
from gradbox import viz

# (name, notes' value)
NOTES_SIMPLE = {"total": 220.0, "apple": 2.2, "num_apple": 110.0, "tax": 200.0, "apple_price": 1.1}
NOTES_FULL = {"total": 715.0, "apple": 2.2, "num_apple": 110.0, "orange": 3.3, "num_orange": 165.0,
              "tax": 650.0, "apple_price": 1.1, "orange_price": 1.1, "all_price": 1.1}


def scalar(value, name):
    # NOTE: float64 so that 1.1 prints as 1.1 (float32 would show 1.100000023841858).
    return gb.Tensor(value, requires_grad=True, dtype="float64", name=name)


def build(simple=False):
    """Return (total, {name: tensor}) for the purchase graph, before backward."""
    apple, num_apple, tax = scalar(100.0, "apple"), scalar(2.0, "num_apple"), scalar(1.1, "tax")
    apple_price = apple * num_apple            # multiply box
    apple_price.name = "apple_price"
    named = {"apple": apple, "num_apple": num_apple, "tax": tax, "apple_price": apple_price}
    if simple:
        total = apple_price * tax
    else:
        orange, num_orange = scalar(150.0, "orange"), scalar(3.0, "num_orange")
        orange_price = orange * num_orange     # multiply box
        orange_price.name = "orange_price"
        all_price = apple_price + orange_price  # add box
        all_price.name = "all_price"
        total = all_price * tax
        named.update(orange=orange, num_orange=num_orange, orange_price=orange_price, all_price=all_price)
    total.name = "total"
    named["total"] = total
    return total, named


def run(simple=False, out=None, verbose=True):
    total, named = build(simple)
    viz.retain_grads(total)        # keep the gradients of the intermediate prices too
    total.backward(retain_graph=True)  # keep the caches: the picture shows each box's local gradient
    notes = NOTES_SIMPLE if simple else NOTES_FULL
    results = {"total": float(total.data)}
    results.update({k: float(t.grad) for k, t in named.items() if k != "total"})
    if verbose:
        print(f"forward: total = {float(total.data):.6g}   (notes: {notes['total']:g})")
        print(f"{'d total / d ...':<18}{'gradbox':>10}{'notes':>10}")
        for k, v in notes.items():
            if k != "total":
                print(f"{k:<18}{results[k]:>10.6g}{v:>10.6g}")
    graph = viz.draw_graph(total, path=out,
                           title="purchase: forward values in black, gradients (upstream × local) in red")
    if verbose and out:
        print(f"graph written to {out}")
    return results, graph


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simple", action="store_true", help="apples only (the first figure)")
    parser.add_argument("--out", default=None, help="picture to write: .svg, .png or .dot")
    args = parser.parse_args(argv)
    results, _ = run(args.simple, args.out)
    notes = NOTES_SIMPLE if args.simple else NOTES_FULL
    ok = all(abs(results[k] - v) < 1e-9 * max(1.0, abs(v)) for k, v in notes.items())
    print("all values match the notes" if ok else "MISMATCH with the notes")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
