#!/usr/bin/python3
"""Writes the seed corpus of pickle_decoder_fuzz: a few dozen tiny pickles
(every protocol, common shapes, a joblib wrapper, Python 2 forms).

Usage: make_seeds.py [OUTDIR]   (default: tests/fuzz/corpus/pickle_decoder)
"""
import collections
import datetime
import hashlib
import io
import os
import pickle
import sys

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "corpus", "pickle_decoder")
os.makedirs(out, exist_ok=True)

values = [
    None, True, 7, -300, 2**40, 2**100, -(2**70), 1.5, float("nan"), "s",
    "\u00e9\n\\", b"\x00\xff", bytearray(b"ab"), (), (1,), (1, 2, 3),
    [1, [2, (3,)]], {"k": [1, 2], 3: None}, {1, 2}, frozenset({3}),
    collections.OrderedDict(a=1), datetime.date(2020, 1, 2),
]
seeds = []
for proto in range(6):
    for v in values:
        try:
            seeds.append(pickle.dumps(v, protocol=proto))
        except Exception:
            pass
shared = [1]
seeds.append(pickle.dumps([shared, shared, {"x": shared}], protocol=4))
seeds += [
    b"(I00\nI01\nL5L\nS'a\\n'\nV\\u00e9\nF1.5\nt.",
    b"(ccollections\nOrderedDict\no}b.",
    b"(icollections\nOrderedDict\np0\n(dp1\nb.",
    b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94\x93\x94h\x00h\x01\x93.",
    b"\x80\x05\x96\x02\x00\x00\x00\x00\x00\x00\x00ab\x97\x98.",
    b"\x82\x01\x83\x02\x00\x84\x03\x00\x00\x000.",
    b"Pid\nQ.",
]
try:
    import joblib
    import numpy as np
    for arr in (np.arange(3.0), np.array([1, "x"], dtype=object),
                np.zeros(2, dtype=[("a", "<i4")])):
        buf = io.BytesIO()
        joblib.dump({"a": arr}, buf)
        seeds.append(buf.getvalue())
    import tempfile
    with tempfile.NamedTemporaryFile() as f:
        joblib.dump([np.arange(4, dtype=np.int16)], f.name)
        seeds.append(open(f.name, "rb").read())
except ImportError:
    pass

for data in seeds:
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(out, name), "wb") as fh:
        fh.write(data)
print("%d seeds in %s" % (len(seeds), out))
