#!/usr/bin/python3
"""A minimal static pickle scan, the floor dynahug's cost is compared with.

Usage: /usr/bin/python3 bench/static_reference.py PATH...

What picklescan does (picklescan itself is not installed here: no PyPI), with
the standard library only: for each file (directories are walked), a zip is
opened with zipfile and every member whose name ends in .pkl is read and
walked with pickletools.genops; any other file is walked as stacked pickle
streams from its start until a stream does not decode (a legacy torch file:
its five pickles, then the storage bytes stop the walk). GLOBAL and
STACK_GLOBAL references are collected; prints one line per file.
Reads the zip directory and the pickle members only, never the storages.
"""
import os
import pickletools
import sys
import zipfile


def globals_of(stream):
    found = set()
    strings = []
    for op, arg, _pos in pickletools.genops(stream):
        if op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.add(f"{strings[-2]}.{strings[-1]}")
    return found


def scan_file(path):
    found = set()
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if name.endswith(".pkl"):
                    with z.open(name) as member:
                        found |= globals_of(member)
        return found
    with open(path, "rb") as f:
        while True:
            start = f.tell()
            try:
                found |= globals_of(f)
            except Exception:
                break
            if f.tell() == start:
                break
    return found


def main():
    paths = []
    for arg in sys.argv[1:]:
        if os.path.isdir(arg):
            for root, _dirs, files in os.walk(arg):
                paths.extend(os.path.join(root, n) for n in sorted(files))
        else:
            paths.append(arg)
    for path in paths:
        found = scan_file(path)
        print(f"{path}: {len(found)} globals: {' '.join(sorted(found))}")


if __name__ == "__main__":
    main()
