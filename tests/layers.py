#!/usr/bin/python3
"""The layer check: agent/ reads top to bottom,

    cli -> bus -> jobs -> {pipe, store, crypto, kube, pg} -> conf -> sys -> log -> shared

(sys: the job state file, progress, child processes and files opened beneath a directory, which report
errors through log; shared: what log itself is built on). A file may include (and so call) only its own
folder or a folder of a lower layer, folders of one layer may not include each other both ways, and files
may not include each other in a cycle, inside a folder either (a .c file counts as its header's
implementation). Prints one line per violation; exits 1 when there is one. tests/run runs it.
--cycles-as-notes prints the cycles inside a folder as notes instead (for a tree being untangled)."""
import os
import re
import sys

LAYERS = [["cli"], ["bus"], ["jobs"], ["pipe", "store", "crypto", "kube", "pg"], ["conf"], ["sys"], ["log"],
          ["shared"]]
RANK = {f: i for i, layer in enumerate(LAYERS) for f in layer}

strict_cycles = "--cycles-as-notes" not in sys.argv[1:]
top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "agent")
include = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
edges = {}
bad = []
for root, _, files in os.walk(top):
    for name in sorted(files):
        if not name.endswith((".c", ".h")):
            continue
        path = os.path.relpath(os.path.join(root, name), top)
        folder = path.split("/")[0] if "/" in path else None
        with open(os.path.join(root, name)) as f:
            targets = include.findall(f.read())
        edges[path] = [t for t in targets if os.path.exists(os.path.join(top, t))]
        for t in edges[path]:
            tf = t.split("/")[0]
            if folder is None or tf == folder:
                continue
            if folder not in RANK or tf not in RANK:
                bad.append(f"agent/{path}: includes {t}: folder {folder if folder not in RANK else tf} "
                           "has no layer (add it to LAYERS in tests/layers.py)")
            elif RANK[tf] < RANK[folder]:
                bad.append(f"agent/{path}: includes {t}: {folder} may not reach up to {tf}")

# Sideways within a layer: one direction only, per pair of folders.
pairs = {}
for src, ts in edges.items():
    for t in ts:
        a, b = src.split("/")[0], t.split("/")[0]
        if "/" in src and a != b and a in RANK and b in RANK and RANK[a] == RANK[b]:
            pairs.setdefault((a, b), []).append(f"agent/{src} -> {t}")
for (a, b), where in sorted(pairs.items()):
    if (b, a) in pairs and a < b:
        bad.append(f"{a} and {b} include each other: {where[0]}; {pairs[(b, a)][0]}")


# File cycles: a .c file counts as its header's implementation, so x.c -> y.h -> ... -> x.h is a cycle.
def node(p):
    return p[:-2] if p.endswith((".c", ".h")) else p


graph = {}
for src, ts in edges.items():
    graph.setdefault(node(src), set()).update(node(t) for t in ts if node(t) != node(src))
state, stack, cycles = {}, [], []


def visit(n):
    state[n] = 1
    stack.append(n)
    for m in sorted(graph.get(n, ())):
        if state.get(m) == 1:
            cycles.append(stack[stack.index(m):] + [m])
        elif m not in state:
            visit(m)
    stack.pop()
    state[n] = 2


sys.setrecursionlimit(10000)
for n in sorted(graph):
    if n not in state:
        visit(n)
notes = []
for c in cycles:
    line = "include cycle: " + " -> ".join(f"agent/{x}" for x in c)
    # Inside one folder too: no file reaches back to one that includes it (issue 15).
    (notes if len({x.split("/")[0] for x in c}) == 1 and not strict_cycles else bad).append(line)

for line in notes:
    print("note: " + line)

for line in bad:
    print(line)
print(f"layers: {len(edges)} files, {len(bad)} violation(s), {len(notes)} cycle(s) inside a folder")
sys.exit(1 if bad else 0)
