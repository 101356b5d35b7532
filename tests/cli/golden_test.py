#!/usr/bin/env python3
"""Golden-output test of `dynahug disasm` and `dynahug trace --format json`.

Usage: golden_test.py BIN SOURCE_DIR {disasm|trace} [--update]

Runs the binary on committed inputs (the fuzz seed corpora and the shipped
example) from SOURCE_DIR, so paths in the output are relative and stable,
and compares with tests/cli/golden/. disasm output must match byte for byte
(stdout, stderr and exit code). trace output is compared after masking what
differs from run to run: timings, RSS, code addresses (ASLR), the dynahug
binary's own frames in native stacks, and libunwind's mincore probes.
--update rewrites the golden files instead (after an intended change; review
the diff).
"""
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden")

DISASM_INPUTS = ("tests/fuzz/corpus/container", "tests/fuzz/corpus/pickle_decoder",
                 "examples/tiny_mlp_state_dict.pt")
# One file per loader, a stacked pickle and an archive member.
TRACE_INPUTS = ("tests/fuzz/corpus/container/p2.pkl",
                "tests/fuzz/corpus/container/stacked.pkl",
                "tests/fuzz/corpus/container/num.npy",
                "tests/fuzz/corpus/container/plain.joblib",
                "tests/fuzz/corpus/container/sd_zip.pt",
                "tests/fuzz/corpus/container/wrap.tar.gz")

VOLATILE = {"timestamp_ns", "wall_ms", "cpu_ms", "max_rss_kib", "pc"}
VOLATILE_ARGS = {"load_ms"}
ADDRESS = re.compile(r"0x[0-9a-f]{6,}")


def inputs(source, entries):
    files = []
    for entry in entries:
        full = os.path.join(source, entry)
        if os.path.isdir(full):
            files += sorted(os.path.join(entry, f) for f in os.listdir(full))
        else:
            files.append(entry)
    return files


def run(binary, source, args):
    p = subprocess.run([binary] + args, cwd=source, capture_output=True,
                       timeout=600)
    return p.stdout, p.stderr, p.returncode


def disasm_cases(binary, source):
    files = inputs(source, DISASM_INPUTS)
    for name, extra in (("disasm.txt", []),
                        ("disasm.json", ["--format", "json", "--max-opcodes", "16"])):
        out, err, code = run(binary, source, ["disasm"] + extra + files)
        yield name, (out + b"--- stderr\n" + err +
                     b"--- exit %d\n" % code)


def mask(x):
    if isinstance(x, dict):
        for k in list(x):
            if k in VOLATILE:
                x[k] = "*"
            elif isinstance(x[k], str):
                x[k] = ADDRESS.sub("0xADDR", x[k])
            else:
                mask(x[k])
        if x.get("native") and x.get("file") == "python3" and "function" in x:
            x["function"] = "<dynahug>"
        if x.get("name") == "mincore" and "number" in x:
            x["count"] = "*"
        if x.get("key") in VOLATILE_ARGS and "value" in x:
            x["value"] = "*"
    elif isinstance(x, list):
        for i, v in enumerate(x):
            if isinstance(v, str):
                x[i] = ADDRESS.sub("0xADDR", v)
            else:
                mask(v)


def trace_cases(binary, source):
    out, err, code = run(binary, source, ["trace", "--format", "json", "--prewarm"]
                         + list(TRACE_INPUTS))
    if code != 0:
        raise SystemExit(f"dynahug trace exited {code}: {err.decode(errors='replace')}")
    lines = []
    for trace in json.loads(out)["traces"]:
        mask(trace)
        events = trace.pop("events", [])
        lines.append(json.dumps(trace, sort_keys=True))
        lines += ["  " + json.dumps(e, sort_keys=True) for e in events]
    yield "trace.jsonl", ("\n".join(lines) + "\n").encode()


def main(argv):
    if len(argv) < 4 or argv[3] not in ("disasm", "trace"):
        print(__doc__, file=sys.stderr)
        return 2
    binary, source, which = argv[1], argv[2], argv[3]
    update = "--update" in argv[4:]
    cases = disasm_cases if which == "disasm" else trace_cases
    failed = False
    for name, got in cases(binary, source):
        path = os.path.join(GOLDEN, name)
        if update:
            with open(path, "wb") as f:
                f.write(got)
            print(f"wrote {path}")
            continue
        with open(path, "rb") as f:
            want = f.read()
        if got == want:
            print(f"{name}: identical ({len(got)} bytes)")
            continue
        failed = True
        got_lines, want_lines = got.splitlines(), want.splitlines()
        n = next((i for i, (a, b) in enumerate(zip(got_lines, want_lines)) if a != b),
                 min(len(got_lines), len(want_lines)))
        print(f"{name}: differs from {path} at line {n + 1}:")
        print("  want:", want_lines[n][:300] if n < len(want_lines) else "<end>")
        print("  got: ", got_lines[n][:300] if n < len(got_lines) else "<end>")
        print(f"  (if the change is intended: {argv[0]} {binary} {source} {which} --update)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
