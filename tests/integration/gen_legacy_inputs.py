"""Inputs of legacy_checkpoint_test: torch legacy (non-zip) checkpoints
whose storages are big, truncated or garbage (issue 10).

    gen_legacy_inputs.py OUT_DIR

A legacy file is five pickles (magic number, protocol version, sys_info, the
object, the list of storage keys) followed by each storage's record (int64
element count, then the bytes), in the key list's order. The benign
reference is written by torch.save(_use_new_zipfile_serialization=False);
the others are written here, never loaded. Payloads are raw opcodes; the
only probe is os.system('/bin/true') (posix.system), which the sandbox
blocks and records. Big storages are sparse (a seek past the end), so the
files cost no disk blocks for their zeros.
"""
import collections
import io
import pathlib
import pickle
import struct
import sys

import torch
from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION

# posix.system('/bin/true'), result popped: a prefix for any stream.
PROBE = (b"cposix\nsystem\nX\x09\x00\x00\x00/bin/true\x85R0")

MIB = 1 << 20


class _Pid:
    """Placeholder pickled as a persistent id."""

    def __init__(self, pid):
        self.pid = pid


class _Tensor:
    """Pickles as torch's legacy tensor record: _rebuild_tensor_v2 on a
    persistent storage id (what torch.save writes)."""

    def __init__(self, pid, size):
        self.pid, self.size = pid, size

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (_Pid(self.pid), 0, (self.size,), (1,), False,
                 collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Pid) else None


def storage_pid(key, numel):
    return ("storage", torch.FloatStorage, key, "cpu", numel, None)


def object_pickle(obj, probe="first"):
    """The object pickle, with the probe first, last (after every persistent
    id of the object) or nowhere (probe=None)."""
    b = io.BytesIO()
    _Pickler(b, protocol=2).dump(obj)
    data = b.getvalue()
    assert data[:2] == b"\x80\x02" and data[-1:] == b"."
    if probe == "last":
        return data[:-1] + PROBE + b"."
    if probe == "first":
        return data[:2] + PROBE + data[2:]
    return data


def header() -> bytes:
    b = io.BytesIO()
    sys_info = dict(protocol_version=PROTOCOL_VERSION, little_endian=True,
                    type_sizes=dict(short=2, int=4, long=4))
    for x in (MAGIC_NUMBER, PROTOCOL_VERSION, sys_info):
        pickle.dump(x, b, protocol=2)
    return b.getvalue()


def keys_pickle(keys, probe=False):
    data = pickle.dumps(list(keys), protocol=2)
    return data[:2] + PROBE + data[2:] if probe else data


def write(path, head: bytes, records, total=None):
    """Writes `head` then each (numel, data) record: the int64 count and the
    bytes given (shorter than numel*4 for a truncated record); with `total`,
    the file is extended (sparse) to that length."""
    with open(path, "wb") as f:
        f.write(head)
        for numel, data in records:
            f.write(struct.pack("<q", numel))
            f.write(data)
        if total is not None:
            f.truncate(total)


def main() -> None:
    out = pathlib.Path(sys.argv[1]) / "legacy"
    out.mkdir(parents=True, exist_ok=True)

    # A real legacy save: a 24 MiB tensor (above the default 1 MiB lazy
    # threshold) and a small one.
    torch.save({"big": torch.ones(6 * MIB, dtype=torch.float32),
                "small": torch.arange(10, dtype=torch.float64)},
               out / "saved-24mib.pt", _use_new_zipfile_serialization=False)

    # The same shape with a 256 MiB storage of zeros (sparse): a load that
    # read it would grow by 256 MiB.
    numel = 64 * MIB
    head = (header() +
            object_pickle({"big": _Tensor(storage_pid("0", numel), numel)},
                          probe=None) + keys_pickle(["0"]))
    write(out / "sparse-256mib.pt", head, [(numel, b"")],
          total=len(head) + 8 + numel * 4)

    # Probe first in the object pickle; the one small storage's bytes are
    # cut short (torch's read fails after the pickles ran).
    small = 16
    head = (header() +
            object_pickle([_Tensor(storage_pid("0", small), small)]) +
            keys_pickle(["0"]))
    write(out / "truncated-small.pt", head, [(small, b"\0" * 10)])
    # ... and a big (lazy) storage cut short.
    big = 8 * MIB
    head = (header() + object_pickle([_Tensor(storage_pid("0", big), big)]) +
            keys_pickle(["0"]))
    write(out / "truncated-big.pt", head, [(big, b"\0" * 1000)])
    # ... and garbage instead of the record (count that does not match).
    head = (header() + object_pickle([_Tensor(storage_pid("0", big), big)]) +
            keys_pickle(["0"]))
    write(out / "garbage-big.pt", head, [(12345, b"\xff" * 4096)])

    # A complete small file (one 16-float storage) followed by a pickle
    # calling the probe: torch reads nothing after the last storage record,
    # so the victim's load never runs it.
    head = (header() +
            object_pickle([_Tensor(storage_pid("0", small), small)],
                          probe=None) + keys_pickle(["0"]))
    write(out / "trailing-probe.pt", head, [(small, b"\0" * (small * 4))])
    with open(out / "trailing-probe.pt", "ab") as f:
        f.write(b"\x80\x02" + PROBE + b"N.")

    # A declared 3 GiB storage first, the probe after it in the object
    # pickle; no storage bytes at all.
    huge = 3 * (1 << 30) // 4
    head = (header() +
            object_pickle([_Tensor(storage_pid("0", huge), huge)],
                          probe="last") +
            keys_pickle(["0"]))
    write(out / "huge-then-probe.pt", head, [])
    # The probe in the storage-key pickle, after the 3 GiB storage.
    head = (header() +
            object_pickle([_Tensor(storage_pid("0", huge), huge)], probe=None)
            + keys_pickle(["0"], probe=True))
    write(out / "huge-keys-probe.pt", head, [])


if __name__ == "__main__":
    main()
