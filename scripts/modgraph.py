#!/usr/bin/env python3
"""The module graph of src/: which top-level module names which, and its cycles.

Reads every non-test source file of each top-level module (src/X.rs, src/X/**)
for `crate::Y` paths and `use crate::{Y, ...}` groups, and prints the groups of
modules that import each other in a circle (strongly connected components).
Also checks that the pure core (PURE below) imports nothing of the runtime.
Exits non-zero on a cycle or such an import, so that CI keeps the graph one-way.

    scripts/modgraph.py            # the cycles, if any
    scripts/modgraph.py --edges    # every edge too
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

# The pure core: data and rules, no I/O. A pure module imports pure modules only, so that the
# runtime (store, ingest, desk, outbox, api, ...) depends on the core and never the reverse.
PURE = {"access", "calendar", "contracts", "domain", "fleet", "modbus", "rollup", "rules", "spares", "tickets"}


def graph():
    mods = [m.group(1) for m in re.finditer(r"^(?:pub(?:\(crate\))? )?mod (\w+);", (SRC / "lib.rs").read_text(), re.M)]
    g = {m: set() for m in mods}
    for f in SRC.rglob("*.rs"):
        rel = f.relative_to(SRC)
        top = rel.parts[0].removesuffix(".rs")
        if top not in g or f.name == "tests.rs" or "tests" in rel.parts[1:-1]:
            continue
        text = f.read_text()
        # A file's own unit tests, at its end, may reach anywhere.
        text = text.split("#[cfg(test)]\nmod tests")[0]
        names = re.findall(r"crate::(\w+)", text)
        for group in re.findall(r"use crate::\{([^}]*)\}", text):
            names += re.findall(r"\b(\w+)\b", group)
        g[top] |= {n for n in names if n in g and n != top}
    return g


def cycles(g):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def main():
    g = graph()
    if "--edges" in sys.argv:
        for m in sorted(g):
            print(f"{m} -> {', '.join(sorted(g[m])) or '(nothing)'}")
    found = cycles(g)
    for c in found:
        print(f"cycle of {len(c)} of {len(g)} modules: {' '.join(c)}")
    if not found:
        print(f"no cycle among {len(g)} modules")
    against = [(m, w) for m in sorted(PURE & g.keys()) for w in sorted(g[m] - PURE)]
    for m, w in against:
        print(f"pure module {m} imports runtime module {w}")
    if not against:
        print(f"the {len(PURE & g.keys())} pure modules import pure modules only")
    return 1 if found or against else 0


if __name__ == "__main__":
    sys.exit(main())
