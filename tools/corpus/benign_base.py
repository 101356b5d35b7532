"""Plumbing shared by the benign generators: the per-task context that seeds
every RNG and turns written files into manifest entries, a deterministic
legacy torch writer, and fake (not installed) modules for pickles that
reference third-party classes."""

from __future__ import annotations

import contextlib
import io
import pathlib
import random
import sys
import types
from typing import Any, Iterator

import common


# The real loader for a file written by ``library`` (tests use these; they
# are also what the sandboxed load should call).
DEFAULT_LOADERS = {
    "torch": "torch.load", "joblib": "joblib.load", "numpy": "numpy.load",
    "pandas": "pandas.read_pickle", "pickle": "pickle.load",
    "sklearn": "pickle.load", "xgboost": "pickle.load", "dill": "dill.load",
    "cloudpickle": "pickle.load",
}


class Ctx:
    """One generator task: where to write, how to seed, what to record.

    ``task`` is a plan entry (see benign.plan): ``key``, ``cluster``,
    ``params``.  Every file a task writes shares the task's group unless
    the generator passes another one.
    """

    def __init__(self, out_dir: pathlib.Path, task: dict, seed: int):
        self.out_dir = pathlib.Path(out_dir)
        self.task = task
        self.cluster = task["cluster"]
        self.params = dict(task["params"])
        self.corpus_seed = seed
        self.seed = common.task_seed(seed, task["key"])
        self.group = f"benign/{task['key']}"  # benign/<cluster>/<name>
        self.entries: list[dict] = []
        self.rng = random.Random(self.seed)
        seed_all(self.seed)

    def path(self, rel: str) -> pathlib.Path:
        """Absolute path for ``benign/<cluster>/<rel>``; parents created."""
        p = self.out_dir / "benign" / self.cluster / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def emit(self, p: pathlib.Path, library: str, params: dict | None = None,
             fmt: str | None = None, group: str | None = None,
             loader: str | None = None) -> None:
        """Records ``p`` (already written) as a manifest entry.  ``loader``
        names the real library call that loads it (default by library)."""
        full = dict(self.params)
        if params:
            full.update(params)
        full["task"] = self.task["key"]
        full["loader"] = loader or DEFAULT_LOADERS[library]
        self.entries.append(common.make_entry(
            self.out_dir, p, label="benign", cluster=self.cluster,
            library=library, group=group or self.group, params=full, fmt=fmt))


def seed_all(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np
        np.random.seed(seed)
    except ImportError:
        pass
    try:
        import torch
        torch.manual_seed(seed)
    except ImportError:
        pass


# --- deterministic legacy (non-zip) torch.save ------------------------------

def legacy_save(obj: Any, path: pathlib.Path, key_base: int = 94_180_000_000_000,
                pickle_protocol: int = 2) -> None:
    """``torch.save(obj, path, _use_new_zipfile_serialization=False)`` with
    deterministic storage keys.

    torch 1.13's ``_legacy_save`` names storages by their C pointer
    (``str(storage._cdata)``), which changes every run.  This writer emits
    the same stream layout (magic, protocol version, sys_info, pickled
    object with ('storage', type, key, location, numel, None) persistent
    ids, sorted key list, raw storages) but keys are pointer-like numbers
    assigned in first-use order, so the bytes are reproducible and still
    look like real legacy files.  Loads with plain ``torch.load``.
    """
    import pickle
    import torch
    import torch.nn as nn
    from torch import serialization as ser
    from torch._sources import get_source_lines_and_file

    serialized_container_types: dict = {}
    serialized_storages: dict = {}
    keys_by_cdata: dict = {}
    next_key = [key_base]

    def persistent_id(o):
        if isinstance(o, type) and issubclass(o, nn.Module):
            if o in serialized_container_types:
                return None
            serialized_container_types[o] = True
            source_file = source = None
            try:
                source_lines, _, source_file = get_source_lines_and_file(o)
                source = "".join(source_lines)
            except Exception:
                pass
            return ("module", o, source_file, source)
        if isinstance(o, torch.storage.TypedStorage):
            storage = o._storage
            storage_type = getattr(torch, o.pickle_storage_type())
            dtype = o.dtype
            numel = o.size()
            cdata = storage._cdata
            if cdata not in keys_by_cdata:
                keys_by_cdata[cdata] = str(next_key[0])
                # Advance like an allocator would: size rounded up to 64.
                next_key[0] += max(64, (storage.nbytes() + 63) // 64 * 64)
            key = keys_by_cdata[cdata]
            if key not in serialized_storages:
                serialized_storages[key] = (storage, dtype)
            return ("storage", storage_type, key, ser.location_tag(storage),
                    numel, None)
        return None

    sys_info = dict(protocol_version=ser.PROTOCOL_VERSION,
                    little_endian=sys.byteorder == "little",
                    type_sizes=dict(short=ser.SHORT_SIZE, int=ser.INT_SIZE,
                                    long=ser.LONG_SIZE))
    with open(path, "wb") as f:
        pickle.dump(ser.MAGIC_NUMBER, f, protocol=pickle_protocol)
        pickle.dump(ser.PROTOCOL_VERSION, f, protocol=pickle_protocol)
        pickle.dump(sys_info, f, protocol=pickle_protocol)
        pickler = pickle.Pickler(f, protocol=pickle_protocol)
        pickler.persistent_id = persistent_id
        pickler.dump(obj)
        keys = sorted(serialized_storages)  # same digit count: creation order
        pickle.dump(keys, f, protocol=pickle_protocol)
        f.flush()
        for key in keys:
            storage, dtype = serialized_storages[key]
            storage._write_file(f, ser._should_read_directly(f), True,
                                torch._utils._element_size(dtype))


def legacy_tar_save(obj: Any, path: pathlib.Path, pickle_protocol: int = 2) -> None:
    """Writes ``obj`` (a state dict or plain container of tensors) in the
    oldest torch format: a tar with ``sys_info``, ``pickle``, ``tensors`` and
    ``storages`` members, the layout ``torch.load``'s ``legacy_load`` still
    reads (torch 1.13 no longer writes it).  Tensors are persistent ids
    (string keys) into ``tensors``; each tensor record names its storage in
    ``storages``, which holds raw data.  Member headers have fixed
    timestamps and owners, so the bytes are reproducible.  Tensors must be
    plain (not nn.Parameter); modules are not supported."""
    import pickle
    import struct
    import tarfile
    import torch
    from torch import serialization as ser

    storages: dict[int, tuple[int, Any, Any]] = {}   # cdata -> (key, storage, type)
    tensors: list[tuple[int, int, Any, torch.Tensor]] = []
    tensor_keys: dict[int, int] = {}

    def persistent_id(o):
        if isinstance(o, nn_parameter_type()):
            raise TypeError("legacy_tar_save: nn.Parameter is not supported")
        if isinstance(o, torch.Tensor):
            if id(o) not in tensor_keys:
                st = o.storage()
                cdata = st._cdata
                if cdata not in storages:
                    storages[cdata] = (len(storages), st,
                                       getattr(torch, st.pickle_storage_type()))
                tensor_keys[id(o)] = len(tensors)
                tensors.append((len(tensors), storages[cdata][0],
                                getattr(torch, o.type().rsplit(".", 1)[-1]), o))
            return str(tensor_keys[id(o)])
        return None

    def member(name: str, data: bytes, tf: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tf.addfile(info, io.BytesIO(data))

    body = io.BytesIO()
    pickler = pickle.Pickler(body, protocol=pickle_protocol)
    pickler.persistent_id = persistent_id
    pickler.dump(obj)

    st_buf = io.BytesIO()
    pickle.dump(len(storages), st_buf, protocol=pickle_protocol)
    for key, st, st_type in sorted(storages.values(), key=lambda v: v[0]):
        pickle.dump((key, "cpu", st_type), st_buf, protocol=pickle_protocol)
        st._storage._write_file(st_buf, False, True, st.element_size())
    pickle.dump([], st_buf, protocol=pickle_protocol)  # no storage views

    t_buf = io.BytesIO()
    pickle.dump(len(tensors), t_buf, protocol=pickle_protocol)
    for key, storage_key, ttype, t in tensors:
        pickle.dump((key, storage_key, ttype), t_buf, protocol=pickle_protocol)
        t_buf.write(struct.pack("<i", t.dim()) + b"\0\0\0\0")
        t_buf.write(struct.pack(f"<{t.dim()}q", *t.size()))
        t_buf.write(struct.pack(f"<{t.dim()}q", *t.stride()))
        t_buf.write(struct.pack("<q", t.storage_offset()))

    sys_info = dict(protocol_version=ser.PROTOCOL_VERSION,
                    little_endian=sys.byteorder == "little",
                    type_sizes=dict(short=ser.SHORT_SIZE, int=ser.INT_SIZE,
                                    long=ser.LONG_SIZE))
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        member("sys_info", pickle.dumps(sys_info, protocol=pickle_protocol), tf)
        member("pickle", body.getvalue(), tf)
        member("tensors", t_buf.getvalue(), tf)
        member("storages", st_buf.getvalue(), tf)


def nn_parameter_type() -> type:
    import torch.nn as nn
    return nn.Parameter


# --- fake third-party modules ----------------------------------------------

@contextlib.contextmanager
def fake_modules(*names: str) -> Iterator[dict[str, types.ModuleType]]:
    """Registers empty modules ``names`` (and their parents) in sys.modules
    for the duration of the block, so objects whose classes claim to live
    there can be pickled by reference.  Refuses to shadow a module that is
    really importable: the point is to reference libraries that are NOT
    installed.  Everything is removed again on exit."""
    import importlib.util
    added: dict[str, types.ModuleType] = {}
    try:
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                sub = ".".join(parts[:i])
                if sub in sys.modules and sub not in added:
                    raise RuntimeError(f"fake_modules: {sub} is a real module")
                if sub in added:
                    continue
                if i == 1 and importlib.util.find_spec(sub) is not None:
                    raise RuntimeError(f"fake_modules: {sub} is installed")
                mod = types.ModuleType(sub)
                sys.modules[sub] = mod
                added[sub] = mod
                if i > 1:
                    setattr(added[".".join(parts[:i - 1])], parts[i - 1], mod)
        yield added
    finally:
        for sub in added:
            sys.modules.pop(sub, None)


def place(cls_or_fn: Any, module: types.ModuleType, qualname: str | None = None) -> Any:
    """Makes ``cls_or_fn`` appear as ``module.<qualname>`` to pickle."""
    qualname = qualname or cls_or_fn.__name__
    cls_or_fn.__module__ = module.__name__
    cls_or_fn.__qualname__ = qualname
    cls_or_fn.__name__ = qualname.rsplit(".", 1)[-1]
    setattr(module, qualname, cls_or_fn)
    return cls_or_fn


def pickle_bytes(obj: Any, protocol: int) -> bytes:
    import pickle
    buf = io.BytesIO()
    pickle.Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()
