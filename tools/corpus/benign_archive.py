"""Benign archives: model folders shipped as zip, tar, tar.gz or 7z (as
people upload them to hubs and release pages).  The malicious side wraps
payloads in zip and 7z, so the benign side must contain archives too, or the
container alone would give the label away.

An archive task runs another benign generator (``inner_gen`` with
``inner_params``) into a scratch directory, then packs everything it wrote
(including non-model files such as a sharded checkpoint's index JSON) into
one archive.  Only the archive gets a manifest entry; its ``params.members``
lists each inner model file with its loader.
"""

from __future__ import annotations

import gzip
import io
import os
import pathlib
import subprocess
import tarfile
import tempfile
import zipfile

import common
from benign_base import Ctx

# 1980-01-01, the zip epoch; used for every member time we control.
FIXED_MTIME = 315532800


def _pack_zip(root: pathlib.Path, names: list[str], out: pathlib.Path) -> None:
    with zipfile.ZipFile(out, "w") as zf:
        for name in names:
            zf.writestr(common.fixed_zipinfo(name, zipfile.ZIP_DEFLATED),
                        (root / name).read_bytes())


def _tar_bytes(root: pathlib.Path, names: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in names:
            data = (root / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), FIXED_MTIME, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _pack_7z(root: pathlib.Path, names: list[str], out: pathlib.Path) -> None:
    for name in names:
        os.chmod(root / name, 0o644)
        os.utime(root / name, (FIXED_MTIME, FIXED_MTIME))
    tmp = root.parent / "out.7z"
    subprocess.run(["7z", "a", "-t7z", "-mx=3", "-mmt=1", "-mtm=off", "-mtc=off",
                    "-mta=off", "-bd", "-bso0", "-bsp0", str(tmp), *names],
                   cwd=root, check=True, stdin=subprocess.DEVNULL)
    out.write_bytes(tmp.read_bytes())


def gen_archive(ctx: Ctx) -> None:
    import importlib
    import benign
    p = ctx.params
    inner_task = {"cluster": ctx.cluster, "gen": p["inner_gen"],
                  "key": ctx.task["key"] + "/inner", "params": p["inner_params"]}
    mod_name, fn_name = benign.GENERATORS[p["inner_gen"]].split(":")
    fn = getattr(importlib.import_module(mod_name), fn_name)
    with tempfile.TemporaryDirectory(prefix="dynahug-corpus-archive-") as d:
        scratch = pathlib.Path(d) / "tree"
        inner = Ctx(scratch, inner_task, ctx.corpus_seed)
        fn(inner)
        # Everything the inner generator wrote, relative to its model folder.
        root = scratch / "benign" / ctx.cluster
        names = sorted(f.relative_to(root).as_posix() for f in root.rglob("*") if f.is_file())
        by_path = {pathlib.PurePosixPath(e["path"]).relative_to(f"benign/{ctx.cluster}")
                   .as_posix(): e for e in inner.entries}
        members = [{"name": n, "loader": by_path[n]["params"]["loader"],
                    "format": by_path[n]["format"], "sha256": by_path[n]["sha256"]}
                   for n in names if n in by_path]
        library = inner.entries[0]["library"]
        out = ctx.path(p["file"])
        wrapper = p["wrapper"]
        if wrapper == "zip":
            _pack_zip(root, names, out)
        elif wrapper == "tar":
            out.write_bytes(_tar_bytes(root, names))
        elif wrapper == "tar.gz":
            with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                       mtime=0) as gz:
                gz.write(_tar_bytes(root, names))
        elif wrapper == "7z":
            _pack_7z(root, names, out)
        else:
            raise ValueError(f"unknown wrapper {wrapper}")
    ctx.emit(out, library, {"members": members, "archive_files": names}, loader="archive")
