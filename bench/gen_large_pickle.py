#!/usr/bin/python3
"""Generates the inputs of pickle_decode_bench (cached: existing files of the
right size are kept).

Usage: gen_large_pickle.py OUTDIR [MEGABYTES]   (default 120)

OUTDIR/mixed.pkl      a realistic mix: a list of records (dicts and tuples
                      of small ints, floats, short strings, nested lists)
                      plus a state-dict-like mapping of names to BINBYTES
                      tensors (about 60% of the bytes)
OUTDIR/small_ops_20mb.pkl  the same at 1/6 of the size, for keep_ops runs
                      (keeping ~90M DecodedOps of the full file needs ~10 GB)
OUTDIR/small_ops.pkl  only small opcodes (the hard case for throughput):
                      tuples/dicts/lists of small ints, None, bools, short
                      strings, memo PUT/GET; built by repeating pickled
                      batches inside one outer list, so it never needs the
                      whole object graph in memory
"""
import os
import pickle
import pickletools
import random
import sys

out = sys.argv[1]
megabytes = int(sys.argv[2]) if len(sys.argv) > 2 else 120
target = megabytes * 1000 * 1000
os.makedirs(out, exist_ok=True)
rng = random.Random(1234)
WORDS = ["relu", "weight", "bias", "conv", "layer", "norm", "x", "id",
         "label", "cat", "dog", "\u00e9t\u00e9", "token", "a" * 12]


def record(i):
    k = rng.random()
    if k < 0.4:
        return {"id": i % 5000, "name": rng.choice(WORDS), "score":
                round(rng.random(), 3), "ok": i % 3 == 0, "tags":
                [rng.randrange(100) for _ in range(3)]}
    if k < 0.8:
        return (i % 256, rng.choice(WORDS), None, rng.random(), -i)
    return [rng.randrange(1 << 16), rng.choice(WORDS), (1, 2), {"k": i % 7}]


def body_of(data):
    """Opcodes of a protocol-4 pickle of a list, without PROTO, FRAMEs, the
    outer EMPTY_LIST/MEMOIZE and STOP: MARK ... APPENDS batches that extend
    whatever list sits below them."""
    ops = list(pickletools.genops(data))
    keep = bytearray()
    skip = {"PROTO", "FRAME", "STOP"}
    started = False
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        if op.name in skip:
            continue
        if not started:
            # Drop the outer EMPTY_LIST and its MEMOIZE.
            if op.name in ("EMPTY_LIST", "MEMOIZE"):
                continue
            started = True
        keep += data[pos:end]
    return bytes(keep)


def write_small_ops(path, size=None):
    size = size or target
    batches = []
    for b in range(8):
        objs = []
        for i in range(20000):
            k = rng.random()
            if k < 0.35:
                objs.append((i % 256, None, True))
            elif k < 0.6:
                objs.append({"a": i % 100, "b": False})
            elif k < 0.8:
                objs.append([i % 50, "ab", None])
            else:
                objs.append(rng.choice(WORDS))
        batches.append(body_of(pickle.dumps(objs, protocol=4)))
    with open(path + ".tmp", "wb") as f:
        f.write(b"\x80\x04]")
        written = 3
        i = 0
        while written < size:
            f.write(batches[i % len(batches)])
            written += len(batches[i % len(batches)])
            i += 1
        f.write(b".")
    os.replace(path + ".tmp", path)


def write_mixed(path):
    records = [record(i) for i in range(300000)]
    size_records = len(pickle.dumps(records, protocol=4))
    tensor_bytes = max(target - size_records, target // 2)
    state = {}
    n = 0
    while n < tensor_bytes:
        size = rng.choice([4096, 16384, 65536, 262144])
        state["layers.%d.%s" % (len(state), rng.choice(["weight", "bias"]))] = \
            rng.randbytes(size)
        n += size
    with open(path + ".tmp", "wb") as f:
        pickle.dump({"records": records, "state_dict": state,
                     "meta": {"epoch": 3}}, f, protocol=4)
    os.replace(path + ".tmp", path)


for name, writer, size in (
        ("small_ops.pkl", write_small_ops, target),
        ("small_ops_20mb.pkl", lambda p: write_small_ops(p, target // 6),
         target // 6),
        ("mixed.pkl", write_mixed, target)):
    path = os.path.join(out, name)
    if os.path.exists(path) and os.path.getsize(path) >= size:
        print("cached %s (%d bytes)" % (path, os.path.getsize(path)))
        continue
    writer(path)
    print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))
