#!/usr/bin/python3
"""Generates the dynahug evaluation corpus (benign task clusters + malicious
techniques) and its manifest.

    /usr/bin/python3 tools/corpus/generate.py --out DIR [--small] [--seed N]
        [--only benign|malicious] [--jobs N]

Writes DIR/benign/<cluster>/..., DIR/malicious/<technique>/... and
DIR/manifest.json.  Output is a pure function of (seed, small): the same
command gives the same bytes and the same manifest.  See README.md.
"""

from __future__ import annotations

import argparse
import collections
import inspect
import os
import pathlib
import shutil
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402


def _load_side(name: str):
    """Imports benign.py / malicious.py; a clear error if it is missing."""
    try:
        return __import__(name)
    except ModuleNotFoundError as e:
        if e.name == name:
            raise SystemExit(
                f"generate.py: tools/corpus/{name}.py is not present "
                f"({e}); run with --only "
                f"{'benign' if name == 'malicious' else 'malicious'} "
                f"or add {name}.py") from None
        raise


def _call_generate(module, out_dir: pathlib.Path, small: bool, seed: int,
                   jobs: int) -> list[dict]:
    fn = module.generate
    if "jobs" in inspect.signature(fn).parameters:
        return fn(out_dir, small, seed, jobs=jobs)
    return fn(out_dir, small, seed)


def _finalize(out_dir: pathlib.Path, entries: list[dict]) -> list[str]:
    """Cross-checks entries against the files on disk and the schema."""
    problems: list[str] = []
    counts = collections.Counter(e.get("path") for e in entries)
    for p in sorted(p for p, n in counts.items() if n > 1):
        problems.append(f"duplicate manifest path {p}")
    for e in entries:
        problems.extend(common.validate_entry(e))
        if "path" not in e:
            continue
        f = out_dir / e["path"]
        if not f.is_file():
            problems.append(f"{e['path']}: listed but not written")
        elif f.stat().st_size != e["size"]:
            problems.append(f"{e['path']}: size differs from manifest")
    problems.extend(common.check_groups(entries))
    return problems


def _ensure_hash_seed() -> None:
    """Re-executes under PYTHONHASHSEED=0: set iteration order of strings
    (sets pickled in benign data, TorchScript's __constants__) must not vary
    between runs, or the corpus bytes would."""
    if os.environ.get("PYTHONHASHSEED") == "0":
        return
    env = dict(os.environ, PYTHONHASHSEED="0")
    os.execve(sys.executable, [sys.executable, str(pathlib.Path(__file__).resolve())]
              + sys.argv[1:], env)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        _ensure_hash_seed()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=pathlib.Path,
                    help="output directory (benign/, malicious/ and "
                         "manifest.json inside it are replaced)")
    ap.add_argument("--small", action="store_true",
                    help="CI-sized corpus: every cluster and technique, "
                         "fewer variants")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=("benign", "malicious"))
    ap.add_argument("--jobs", type=int,
                    default=max(1, min(2, os.cpu_count() or 1)),
                    help="worker processes (default: min(2, cpus))")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be >= 1")

    sides = [args.only] if args.only else ["benign", "malicious"]
    modules = {side: _load_side(side) for side in sides}

    out_dir = args.out.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)
    for side in ("benign", "malicious"):
        # Stale files of a previous run would make the tree disagree with
        # the manifest; only our own output subtrees are removed.
        if (out_dir / side).exists():
            shutil.rmtree(out_dir / side)

    entries: list[dict] = []
    t_all = time.monotonic()
    for side in sides:
        t0 = time.monotonic()
        got = _call_generate(modules[side], out_dir, args.small, args.seed,
                             args.jobs)
        print(f"generate.py: {side}: {len(got)} files in "
              f"{time.monotonic() - t0:.1f}s", file=sys.stderr)
        entries.extend(got)

    problems = _finalize(out_dir, entries)
    if problems:
        for p in problems[:50]:
            print(f"generate.py: error: {p}", file=sys.stderr)
        print(f"generate.py: {len(problems)} manifest problems; "
              f"manifest not written", file=sys.stderr)
        return 1
    path = common.write_manifest(out_dir, args.seed, args.small, entries)
    by_split: dict[str, int] = {}
    for e in entries:
        key = f"{e['label']}/{e['split']}"
        by_split[key] = by_split.get(key, 0) + 1
    print(f"generate.py: wrote {path} ({len(entries)} files; "
          f"{', '.join(f'{k}={v}' for k, v in sorted(by_split.items()))}) "
          f"in {time.monotonic() - t_all:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
