#!/usr/bin/env python3
"""Import cycles between the files of a Rust crate's src/, and arrows that point the wrong way
between its stages (issue 32).

Reads every .rs file under SRC, resolves `use crate::/super::/self::/child::` paths and inline
`crate::a::b` paths to the file that defines the module, skips test-only code (`#[cfg(test)]`
modules and files), and prints every strongly connected component of more than one file.
Exit 1 when a cycle is found that is not in KNOWN, or an import matches a rule of UPWARD that
is not in KNOWN_UPWARD, (each with the reason it is still there),
or when a KNOWN cycle is gone (so the list shrinks with the code). Text matching, not rustc:
it can miss an import spelled unusually, never invent one.

Usage: import_cycles.py SRC
"""
import os
import re
import sys

# Cycles still there, and why. Remove an entry when its cycle is cut.
KNOWN = {}


# (importer's path prefix, imported path prefix, why that way is wrong). The agent's stages run
# capture → enrich/names/policy → event → alerts/journal → serve; telemetry is a leaf.
UPWARD = [
    ("journal/", "serve/", "the journal is read by the API and the sinks, never the reverse"),
    ("journal/", "capture/", "the journal records events; it does not drive capture"),
    ("serve/sinks/", "serve/api/", "sinks read the journal through journal/feed, not the API"),
    ("serve/api/", "serve/collector/", "the API serves what it is given; the collector's binary wires it"),
    ("serve/collector/", "serve/sinks/", "the collector receives what sinks send; what both use is in serve/nats.rs and serve/cursor.rs"),
    ("telemetry/", "config/", "telemetry is a leaf every stage may import"),
    ("telemetry/", "serve/", "telemetry is a leaf every stage may import"),
    ("names/", "capture/", "naming is a stage the pipeline drives"),
    ("enrich/", "capture/", "enrichment is a stage the pipeline drives"),
    ("policy/", "capture/", "the policy is a stage the pipeline drives"),
]

# Wrong-way imports still there, and why. Remove an entry when it is gone.
KNOWN_UPWARD = {
}


def module_of(path):
    parts = path[:-3].split("/")
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def use_trees(prefix, tree):
    """Expands `a::{b, c::d as e, *}` into its paths."""
    tree = tree.strip()
    if tree.startswith("{"):
        depth, current, items = 0, "", []
        for ch in tree[1:-1]:
            if ch == "{":
                depth += 1
            if ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                items.append(current)
                current = ""
            else:
                current += ch
        items.append(current)
        for item in items:
            if item.strip():
                yield from use_trees(prefix, item)
        return
    m = re.match(r"([A-Za-z_0-9]+)\s*::\s*(.*)$", tree, re.S)
    if m:
        yield from use_trees(prefix + [m.group(1)], m.group(2))
        return
    name = re.split(r"\s+as\s+", tree)[0].strip()
    yield prefix if name in ("*", "self") else prefix + [name]


def graph(src):
    files = {}
    for d, _, names in os.walk(src):
        for n in names:
            if n.endswith(".rs"):
                p = os.path.relpath(os.path.join(d, n), src)
                with open(os.path.join(d, n), encoding="utf-8") as f:
                    files[p] = f.read()
    modules = {module_of(p): p for p in files}
    test_only = set()
    for p, text in files.items():
        for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\(crate\))?\s+)?mod (\w+)\s*;", text):
            t = modules.get(module_of(p) + (m.group(1),))
            if t:
                test_only.add(t)

    def resolve(segs):
        for n in range(len(segs), -1, -1):
            if tuple(segs[:n]) in modules:
                return modules[tuple(segs[:n])]
        return None

    edges = {}
    for p, text in files.items():
        edges[p] = set()
        if p.endswith("tests.rs") or p in test_only:
            continue
        text = re.sub(r"//[^\n]*", "", text)
        m = re.search(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?mod \w+\s*\{", text)
        if m:
            text = text[: m.start()]
        text = re.sub(r"#\[cfg\(test\)\]\s*(pub(\(crate\))?\s+)?(mod|use)\s[^;]*;", "", text)
        me = list(module_of(p))

        def absolute(segs):
            if segs[0] == "crate":
                return segs[1:]
            if segs[0] == "super":
                base = me[:]
                while segs and segs[0] == "super":
                    base, segs = base[:-1], segs[1:]
                return base + segs
            if segs[0] == "self":
                return me + segs[1:]
            if tuple(me + [segs[0]]) in modules:
                return me + segs
            return None

        def add(segs):
            a = absolute(segs) if segs else None
            t = resolve(a) if a is not None else None
            if t and t != p:
                edges[p].add(t)

        for m in re.finditer(r"\buse\s+([A-Za-z_]+\s*::[^;]*);", text, re.S):
            for segs in use_trees([], m.group(1)):
                add(segs)
        text = re.sub(r"\buse\s+[A-Za-z_]+\s*::[^;]*;", "", text, flags=re.S)
        for m in re.finditer(r"(?<![:A-Za-z_0-9])([a-z_][a-z_0-9]*(?:\s*::\s*[A-Za-z_0-9]+)+)", text):
            add([s.strip() for s in m.group(1).split("::")])
    return edges


def cycles(edges):
    """Tarjan's strongly connected components, iteratively."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(frozenset(comp))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    edges = graph(sys.argv[1])
    found = cycles(edges)
    failed = False
    seen_upward = set()
    for importer, imported in sorted((a, b) for a, bs in edges.items() for b in bs):
        for low, high, why in UPWARD:
            if importer.startswith(low) and imported.startswith(high):
                seen_upward.add((importer, imported))
                if (importer, imported) in KNOWN_UPWARD:
                    print(f"wrong-way import (known: {KNOWN_UPWARD[(importer, imported)]}): {importer} -> {imported}")
                else:
                    print(f"wrong-way import: {importer} -> {imported}: {why}")
                    failed = True
    for arrow in KNOWN_UPWARD:
        if arrow not in seen_upward:
            print(f"a known wrong-way import is gone, remove it from KNOWN_UPWARD: {arrow[0]} -> {arrow[1]}")
            failed = True
    for c in found:
        if c in KNOWN:
            print(f"import cycle (known: {KNOWN[c]}): {' '.join(sorted(c))}")
        else:
            print(f"import cycle: {' '.join(sorted(c))}")
            failed = True
    for c in KNOWN:
        if c not in found:
            print(f"a known cycle is gone, remove it from KNOWN: {' '.join(sorted(c))}")
            failed = True
    if failed:
        sys.exit(1)
    print(f"no new import cycle or wrong-way import between the files of {sys.argv[1]}")


main()
