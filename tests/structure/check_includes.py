#!/usr/bin/env python3
"""Checks the include structure of the project against its layers.

Usage: check_includes.py ROOT

Every .h/.cc/.cpp file under the library folders belongs to a room (the
longest matching prefix in ROOMS). A quoted include of a project file may
point only into the including file's own room, into proto/ (generated wire
formats), or into a room that ALLOWED lists for it: dependencies point down
(../shared/DESIGN.md, "Layers"). Units (a file path without its extension,
so foo.h and foo.cc are one unit) must not include each other, directly or
through a chain. Prints one line per violation; exits 1 when there is any.
"""
import os
import re
import sys

# Folders whose sources are checked, and the rooms inside them (most
# specific first where one is inside another).
SOURCE_DIRS = ("hooks", "sandbox", "features", "runtime")
ROOMS = ("hooks/base", "hooks", "sandbox", "features", "runtime/container",
         "runtime/embed", "runtime/trace", "runtime/scanner", "runtime/cli",
         "proto")

# Room -> the other rooms it may include (its own room and proto/ always).
ALLOWED = {
    "hooks/base": set(),
    "hooks": {"hooks/base"},
    "sandbox": {"hooks/base"},
    "features": {"hooks/base"},
    "runtime/container": {"hooks/base", "hooks"},
    "runtime/embed": {"hooks/base", "hooks"},
    "runtime/trace": {"hooks/base", "hooks", "sandbox", "runtime/container",
                      "runtime/embed"},
    "runtime/scanner": {"hooks/base", "hooks", "sandbox", "runtime/container",
                        "runtime/embed", "runtime/trace", "features"},
    "runtime/cli": {"hooks/base", "hooks", "sandbox", "runtime/container",
                    "runtime/embed", "runtime/trace", "runtime/scanner",
                    "features"},
}
# Rooms that include nothing of the project but proto/.
NO_PROTO = {"hooks/base"}

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
SOURCE_EXT = (".h", ".cc", ".cpp")


def room_of(path):
    for room in ROOMS:
        if path == room or path.startswith(room + "/"):
            return room
    return None


def unit_of(path):
    return os.path.splitext(path)[0]


def sources(root):
    for top in SOURCE_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, top)):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(SOURCE_EXT):
                    full = os.path.join(dirpath, name)
                    yield os.path.relpath(full, root).replace(os.sep, "/")


def check(root):
    """Returns the list of violations (strings) for the tree at `root`."""
    problems = []
    graph = {}  # unit -> units it includes
    for path in sources(root):
        src_room = room_of(path)
        if src_room is None or src_room == "proto":
            problems.append(f"{path}: not inside any room of {ROOMS}")
            continue
        with open(os.path.join(root, path), errors="replace") as f:
            text = f.read()
        for target in INCLUDE.findall(text):
            dst_room = room_of(target)
            if dst_room is None:
                continue  # not a project file (absl/, gtest/, ...)
            if dst_room == "proto":
                if src_room in NO_PROTO:
                    problems.append(f"{path} -> {target}: {src_room} may not "
                                    f"include proto")
                continue
            if dst_room != src_room and dst_room not in ALLOWED[src_room]:
                problems.append(f"{path} -> {target}: {src_room} may not "
                                f"include {dst_room}")
            a, b = unit_of(path), unit_of(target)
            if a != b:
                graph.setdefault(a, set()).add(b)
    problems.extend(f"include cycle: {' -> '.join(c + [c[0]])}"
                    for c in cycles(graph))
    return problems


def cycles(graph):
    """Strongly connected components of more than one unit (Tarjan), each as
    a sorted list of units."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        # Iterative DFS: (node, iterator over its successors).
        work = [(v, iter(sorted(graph.get(v, ()))))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        while work:
            node, successors = work[-1]
            advanced = False
            for w in successors:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    advanced = True
                    break
                if w in on_stack:
                    low[node] = min(low[node], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    problems = check(argv[1])
    for p in problems:
        print(p)
    if not problems:
        print(f"include structure ok ({sum(1 for _ in sources(argv[1]))} files)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
