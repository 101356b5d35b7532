"""Shared helpers for the dynahug corpus generators.

Manifest entries, content hashing, container sniffing and the deterministic
train/val/test split.  Used by ``benign.py``, ``malicious.py`` and
``generate.py``.  Standard library only, so importing it is cheap.

Manifest (``DIR/manifest.json``)::

    {"version": 1, "seed": N, "small": bool, "files": [entry, ...]}

Entry fields (see tools/corpus/README.md): ``path`` (relative to DIR, POSIX
separators), ``sha256``, ``size``, ``label`` ("benign"|"malicious"),
``cluster``, ``technique`` (None for benign), ``library``, ``format``,
``group``, ``split``, ``params``; malicious entries also ``effects``,
``loads`` and ``description``.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import tarfile
import zipfile
from typing import Any, Iterable

MANIFEST_VERSION = 1

LABELS = ("benign", "malicious")
SPLITS = ("train", "val", "test")
LIBRARIES = ("torch", "sklearn", "joblib", "numpy", "pandas", "xgboost",
             "dill", "cloudpickle", "pickle")
FORMATS = ("raw-pickle", "torch-zip", "torchscript-zip", "torch-legacy",
           "torch-legacy-tar", "joblib", "npy", "npz", "zip", "7z", "tar",
           "gzip", "bzip2", "xz", "lzma", "zlib")
EFFECTS = ("file-write", "connect", "exec", "import", "tamper", "delayed",
           "nested-load")

# Benign split: percentage boundaries on a stable 0..99 bucket of the group.
BENIGN_TRAIN_PCT = 60
BENIGN_VAL_PCT = 20  # the rest (20) is test

REQUIRED_FIELDS = ("path", "sha256", "size", "label", "cluster", "technique",
                   "library", "format", "group", "split", "params")
MALICIOUS_FIELDS = ("effects", "loads", "description")

# Fixed timestamp for every zip/tar member we write ourselves (zip's epoch).
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: pathlib.Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def stable_int(*parts: Any, bits: int = 64) -> int:
    """A process-independent integer hash of ``parts`` (unlike ``hash()``)."""
    text = "\x1f".join(str(p) for p in parts)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[: bits // 8], "big")


def task_seed(seed: int, key: str) -> int:
    """Per-task RNG seed (fits numpy's 32-bit seed) derived from the corpus
    seed and a task key, so a task's output does not depend on which worker
    process runs it or in which order."""
    return stable_int("task", seed, key, bits=32)


def assign_split(group: str, label: str) -> str:
    """Deterministic split of a near-duplicate group.

    The bucket depends only on the group key (not on the corpus seed or the
    file), so every file of a group lands in the same split and a group never
    spans two splits.  Benign groups go ~60/20/20 to train/val/test.
    Malicious groups go ~50/50 to val/test and never to train: detection
    hyperparameters are chosen on benign data only.
    """
    if label not in LABELS:
        raise ValueError(f"assign_split: unknown label {label!r}")
    bucket = stable_int("split", label, group) % 100
    if label == "malicious":
        return "val" if bucket < 50 else "test"
    if bucket < BENIGN_TRAIN_PCT:
        return "train"
    if bucket < BENIGN_TRAIN_PCT + BENIGN_VAL_PCT:
        return "val"
    return "test"


# --- container sniffing ---------------------------------------------------

_TORCH_LEGACY_MAGIC = bytes.fromhex("8a0a6cfc9c46f9206aa85019")  # LONG1 magic


def sniff_format(path: pathlib.Path | str) -> str:
    """The top-level container of ``path``, from its content (never its name).

    Returns one of FORMATS.  Raises ValueError when nothing matches, so a
    generator that writes an unexpected container fails loudly.
    """
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        head = f.read(512)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _sniff_zip(path)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if len(head) >= 262 and head[257:262] == b"ustar":
        try:
            with tarfile.open(path) as tf:
                names = set(tf.getnames())
        except tarfile.TarError:
            return "tar"
        if {"pickle", "storages", "tensors"} <= names:
            return "torch-legacy-tar"
        return "tar"
    if head[:1] == b"\x80" and len(head) > 2:
        # Pickle protocol >= 2.  Legacy torch saves start with the pickled
        # magic number (PROTO, LONG1 0x1950a86a20f9469cfc6c).
        if head[2:14] == _TORCH_LEGACY_MAGIC:
            return "torch-legacy"
        with open(path, "rb") as f:
            body = f.read(1 << 16)
        if b"NumpyArrayWrapper" in body and b"joblib" in body:
            return "joblib"
        return "raw-pickle"
    if head[:1] == b"\x78" and len(head) > 1 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    if head[:3] == b"\x5d\x00\x00":
        return "lzma"
    if head[:1] in (b"(", b"]", b"}", b"c", b"I", b"S", b"V", b"N", b"F", b"L"):
        return "raw-pickle"  # protocol 0/1 pickles have no PROTO opcode
    raise ValueError(f"sniff_format: unrecognised container in {path} "
                     f"(first bytes {head[:8].hex()})")


def _sniff_zip(path: pathlib.Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        return "zip"
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    if any(n.endswith("/constants.pkl") or "/code/__torch__/" in n
           for n in names):
        return "torchscript-zip"
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return "torch-zip"
    return "zip"


# --- manifest entries -----------------------------------------------------

def make_entry(out_dir: pathlib.Path, path: pathlib.Path, *, label: str,
               cluster: str, library: str, group: str, params: dict,
               technique: str | None = None, fmt: str | None = None,
               **extra: Any) -> dict:
    """Manifest entry for a file already written under ``out_dir``.

    Computes sha256, size and split.  ``fmt`` defaults to the sniffed
    container; when given it must agree with the sniffer (ValueError if not).
    ``extra`` carries the malicious-only fields (effects, loads,
    description).
    """
    out_dir = pathlib.Path(out_dir)
    path = pathlib.Path(path)
    abs_path = path if path.is_absolute() else out_dir / path
    rel = abs_path.relative_to(out_dir).as_posix()
    sniffed = sniff_format(abs_path)
    if fmt is None:
        fmt = sniffed
    elif fmt != sniffed:
        raise ValueError(f"make_entry: {rel}: declared format {fmt!r} but "
                         f"content sniffs as {sniffed!r}")
    entry = {
        "path": rel,
        "sha256": sha256_file(abs_path),
        "size": abs_path.stat().st_size,
        "label": label,
        "cluster": cluster,
        "technique": technique,
        "library": library,
        "format": fmt,
        "group": group,
        "split": assign_split(group, label),
        "params": params,
    }
    entry.update(extra)
    return entry


def validate_entry(entry: dict) -> list[str]:
    """Schema problems of one entry (empty list when valid)."""
    problems = []
    where = entry.get("path", "<no path>")
    for key in REQUIRED_FIELDS:
        if key not in entry:
            problems.append(f"{where}: missing field {key!r}")
    if problems:
        return problems
    if entry["label"] not in LABELS:
        problems.append(f"{where}: bad label {entry['label']!r}")
    if entry["split"] not in SPLITS:
        problems.append(f"{where}: bad split {entry['split']!r}")
    if entry["format"] not in FORMATS:
        problems.append(f"{where}: bad format {entry['format']!r}")
    if entry["library"] not in LIBRARIES:
        problems.append(f"{where}: bad library {entry['library']!r}")
    if not isinstance(entry["params"], dict):
        problems.append(f"{where}: params is not a dict")
    if not isinstance(entry["size"], int) or entry["size"] < 0:
        problems.append(f"{where}: bad size {entry['size']!r}")
    if entry["label"] == "benign":
        if entry["technique"] is not None:
            problems.append(f"{where}: benign entry has a technique")
    else:
        if not entry["technique"]:
            problems.append(f"{where}: malicious entry without technique")
        if entry["split"] == "train":
            problems.append(f"{where}: malicious entry in train split")
        for key in MALICIOUS_FIELDS:
            if key not in entry:
                problems.append(f"{where}: missing field {key!r}")
        for eff in entry.get("effects", []):
            if eff not in EFFECTS:
                problems.append(f"{where}: unknown effect {eff!r}")
    expected = assign_split(entry["group"], entry["label"]) \
        if entry["label"] in LABELS else entry["split"]
    if entry["split"] != expected:
        problems.append(f"{where}: split {entry['split']!r} != "
                        f"assign_split(group) {expected!r}")
    return problems


def check_groups(entries: Iterable[dict]) -> list[str]:
    """Groups that span more than one split (must be empty)."""
    seen: dict[str, str] = {}
    problems = []
    for e in entries:
        prev = seen.setdefault(e["group"], e["split"])
        if prev != e["split"]:
            problems.append(f"group {e['group']!r} in {prev} and {e['split']}")
    return problems


def write_manifest(out_dir: pathlib.Path, seed: int, small: bool,
                   entries: list[dict]) -> pathlib.Path:
    """Writes ``manifest.json`` with entries sorted by path; returns its path."""
    files = sorted(entries, key=lambda e: e["path"])
    doc = {"version": MANIFEST_VERSION, "seed": seed, "small": small,
           "files": files}
    path = pathlib.Path(out_dir) / "manifest.json"
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return path


def read_manifest(out_dir: pathlib.Path) -> dict:
    return json.loads((pathlib.Path(out_dir) / "manifest.json").read_text())


def fixed_zipinfo(name: str, compress_type: int = zipfile.ZIP_STORED) -> zipfile.ZipInfo:
    """A ZipInfo with a fixed timestamp and permissions (deterministic zips)."""
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
    info.compress_type = compress_type
    info.external_attr = 0o644 << 16
    info.create_system = 3
    return info


def normalize_zip(path: pathlib.Path) -> None:
    """Rewrites a zip written by a library (pandas, ...) with fixed
    timestamps, same member order and compression.  Not for torch zips
    (their alignment padding would be lost; torch's writer is already
    deterministic)."""
    path = pathlib.Path(path)
    with zipfile.ZipFile(path) as zf:
        members = [(i.filename, i.compress_type, zf.read(i)) for i in zf.infolist()]
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for name, ctype, data in members:
            zf.writestr(fixed_zipinfo(name, ctype), data)
    tmp.replace(path)
