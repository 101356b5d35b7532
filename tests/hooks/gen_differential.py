#!/usr/bin/python3
"""Generates pickles and their pickletools.genops reference for the C++
differential test of hooks/pickle_decoder.

Usage: gen_differential.py OUTDIR

Writes OUTDIR/NNNN_label.pkl and OUTDIR/NNNN_label.ref (JSON lines, one
JSON array of strings per line):
  ["stream", START]                 a pickle stream starting at offset START
  ["op", POS, NAME, ARG]            one opcode as genops reports it
  ["end", POS]                      offset just after the stream's STOP
  ["global", MODULE, NAME, SOURCE]  a global the stream resolves (in order);
                                    SOURCE is inline|stack|memo
and OUTDIR/index.txt listing every NNNN_label. ARG is normalised:
  "-" no argument, "i:<decimal>", "b:True|False", "f:<float.hex()>",
  "s:<hex of UTF-8 (surrogatepass)>", "y:<hex>" (bytes/bytearray).

It also writes joblib files to OUTDIR/joblib/NNNN_label.pkl with
OUTDIR/joblib/NNNN_label.ref lines ["size", N] and
["array", DTYPE_STR, "d0,d1,..."] per array, in file order.

Only benign objects built here are pickled; globals are resolved by a
pure-Python Unpickler whose find_class returns inert stubs, so nothing the
pickles reference is ever called.
"""

import collections
import datetime
import decimal
import fractions
import io
import json
import os
import pickle
import pickletools
import struct
import sys
import tempfile
import zipfile
import warnings

warnings.filterwarnings("ignore")

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
os.makedirs(os.path.join(OUT, "joblib"), exist_ok=True)
# index.txt is written last: remove a stale one so a failed run shows.
if os.path.exists(os.path.join(OUT, "index.txt")):
    os.remove(os.path.join(OUT, "index.txt"))
INDEX = []
COUNTER = [0]


def norm(arg):
    if arg is None:
        return "-"
    if isinstance(arg, bool):
        return "b:%s" % arg
    if isinstance(arg, int):
        return "i:%d" % arg
    if isinstance(arg, float):
        return "f:" + arg.hex()
    if isinstance(arg, str):
        return "s:" + arg.encode("utf-8", "surrogatepass").hex()
    if isinstance(arg, (bytes, bytearray)):
        return "y:" + bytes(arg).hex()
    raise TypeError(type(arg))


class _Stub:
    """Inert stand-in for every global: accepts any call or state."""

    def __new__(cls, *a, **k):
        if not isinstance(cls, type):  # NEWOBJ on a stub instance
            cls = type(cls)
        return object.__new__(cls)

    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        return _Stub()

    def __setstate__(self, state):
        pass

    def __setitem__(self, k, v):
        pass

    def append(self, x):
        pass

    def extend(self, xs):
        pass

    def add(self, x):
        pass


class _RecordingUnpickler(pickle._Unpickler):
    def __init__(self, f):
        super().__init__(f)
        self.found = []

    def find_class(self, module, name):
        self.found.append((module, name))
        # A fresh subclass per global so that NEWOBJ's cls.__new__ works.
        return type("Stub_" + name.replace(".", "_"), (_Stub,), {})

    def persistent_load(self, pid):
        return _Stub()


def reference_globals(data, start):
    f = io.BytesIO(data)
    f.seek(start)
    u = _RecordingUnpickler(f)
    u.load()
    return u.found


def global_sources(ops):
    """Source (inline/stack/memo) of each global-resolving opcode."""
    out = []
    for i, (op, arg, pos) in enumerate(ops):
        if op.name in ("GLOBAL", "INST"):
            out.append("inline")
        elif op.name == "STACK_GLOBAL":
            pushes = []
            j = i - 1
            while j >= 0 and len(pushes) < 2:
                name = ops[j][0].name
                if name not in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT",
                                "FRAME"):
                    pushes.append(name)
                j -= 1
            memo = any(p in ("GET", "BINGET", "LONG_BINGET") for p in pushes)
            out.append("memo" if memo else "stack")
    return out


def emit(label, data, streams=1, check_globals=True):
    """Writes one file and the genops reference of its first `streams`
    stacked pickles."""
    COUNTER[0] += 1
    stem = "%04d_%s" % (COUNTER[0], label)
    lines = []
    f = io.BytesIO(data)
    for _ in range(streams):
        start = f.tell()
        lines.append(["stream", str(start)])
        ops = list(pickletools.genops(f))
        for op, arg, pos in ops:
            lines.append(["op", str(pos), op.name, norm(arg)])
        end = f.tell()
        lines.append(["end", str(end)])
        if check_globals:
            found = reference_globals(data, start)
            sources = global_sources(ops)
            if len(found) != len(sources):
                raise RuntimeError("%s: %d find_class calls but %d global "
                                   "opcodes" % (stem, len(found), len(sources)))
            for (module, name), src in zip(found, sources):
                lines.append(["global", module, name, src])
    with open(os.path.join(OUT, stem + ".pkl"), "wb") as fh:
        fh.write(data)
    with open(os.path.join(OUT, stem + ".ref"), "w") as fh:
        for line in lines:
            fh.write(json.dumps(line) + "\n")
    INDEX.append(stem)


# ---------------------------------------------------------------------------
# Plain values, every protocol.


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y


class Reduced:
    def __init__(self, v):
        self.v = v

    def __reduce__(self):
        return (Reduced, (self.v,))


class ReducedEx:
    def __init__(self, v):
        self.v = v

    def __reduce_ex__(self, protocol):
        return (ReducedEx, (self.v,), {"p": protocol})

    def __setstate__(self, state):
        self.state = state


class WithState:
    def __init__(self):
        self.a = 1

    def __getstate__(self):
        return ("custom", self.a)

    def __setstate__(self, s):
        self.a = s[1]


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self):
        self.a, self.b = 1, "two"


shared = [1, 2, 3]
recursive_list = [1]
recursive_list.append(recursive_list)
recursive_dict = {"k": 1}
recursive_dict["self"] = recursive_dict

VALUES = {
    "none": None,
    "bools": [True, False],
    "small_ints": [0, 1, -1, 255, 256, 65535, 65536, -129, 2**31 - 1, -2**31],
    "int_edges": [2**31, -2**31 - 1, 2**63 - 1, -2**63, 2**63, -2**63 - 1,
                  2**64],
    "huge_ints": [2**1000 + 12345, -(3**2000), 10**300, -1 << 4000],
    "floats": [0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, 3.141592653589793,
               float("inf"), float("-inf"), float("nan"), 1e-310, 0.1],
    "ascii_str": "hello world",
    "unicode_str": "h\u00e9llo \u4e16\u754c \U0001f600 \u0000 tab\t",
    "escape_str": "back\\slash\nnewline\r\"quote' \\u0041 \x7f\x80\xff",
    "surrogate_str": "lone \ud800 surrogate",
    "empty_str": "",
    "long_str": "x" * 300 + "\u00e9" * 70000,
    "bytes": b"\x00\x01\xff raw \n bytes",
    "long_bytes": bytes(range(256)) * 300,
    "empty_bytes": b"",
    "bytearray": bytearray(b"abc\x00\xfe"),
    "tuples": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ((),)],
    "lists": [[], [1], list(range(2000))],
    "dicts": {"a": 1, 2: "b", (1, 2): [3], None: {}},
    "big_dict": {i: str(i) for i in range(1500)},
    "sets": {1, 2, 3, "x"},
    "frozensets": [frozenset(), frozenset({1, 2}), frozenset(range(1200))],
    "big_set": set(range(2500)),
    "nested": {"l": [{"t": (1, [2, {3: (4,)}])}] * 3, "e": []},
    "shared_refs": [shared, shared, {"s": shared}],
    "recursive_list": recursive_list,
    "recursive_dict": recursive_dict,
    "ordereddict": collections.OrderedDict([("b", 1), ("a", 2)]),
    "defaultdict": collections.defaultdict(int, {"x": 1}),
    "counter": collections.Counter("abracadabra"),
    "deque": collections.deque([1, 2, 3], maxlen=5),
    "namedtuple_like": datetime.timezone(datetime.timedelta(hours=2), "X"),
    "datetime": [datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
                 datetime.date(1999, 12, 31), datetime.time(1, 2),
                 datetime.timedelta(days=-3, seconds=7)],
    "decimal": [decimal.Decimal("3.14159"), decimal.Decimal("-Infinity")],
    "fraction": fractions.Fraction(22, 7),
    "complex": [1 + 2j, complex("nan")],
    "range_slice": [range(1, 10, 2), slice(1, None, 3)],
    "builtin_types": [int, str, list, Exception],
    "exception": ValueError("bad", 42),
    "point": Point(1, [2]),
    "reduced": [Reduced(5), Reduced("x")],
    "reduced_ex": ReducedEx({"k": [1]}),
    "getstate": WithState(),
    "slots": Slotted(),
    "mixed_list": [None, True, 1, 1.0, "s", b"b", (1,), [2], {3: 4}, {5}],
}


def plain_values():
    for label, value in VALUES.items():
        for proto in range(0, 6):
            try:
                data = pickle.dumps(value, protocol=proto)
            except Exception:
                continue  # e.g. slots objects need protocol >= 2
            emit("%s_p%d" % (label, proto), data)


def optimized_variants():
    for label in ["dicts", "nested", "shared_refs", "recursive_list",
                  "mixed_list", "ordereddict", "point", "datetime",
                  "big_dict", "unicode_str", "reduced_ex", "escape_str"]:
        for proto in (0, 2, 4, 5):
            data = pickle.dumps(VALUES[label], protocol=proto)
            emit("%s_opt_p%d" % (label, proto), pickletools.optimize(data))


def handcrafted():
    """Opcode forms that CPython 3 no longer writes (Python 2 pickles)."""
    cases = {
        # INT bools and plain ints, LONG with and without L, STRING quotes.
        "py2_ints": b"(I00\nI01\nI42\nI-7\nL123L\nL-99999999999999999999999L\n"
                    b"L5\nI123456789012345678901\nt.",
        "py2_strings": b"(S'abc'\nS\"dq\"\nS'esc\\n\\x41\\\\'\nU\x03xyzT\x02"
                       b"\x00\x00\x00hit.",
        "py2_float": b"(F1.5\nF-0.0\nF1e+300\nFinf\nFnan\nF  2.5 \nt.",
        "py2_memo": b"(lp0\nI1\naI2\nag0\nap1\n(dp2\nS'k'\np3\ng3\nsa.",
        "py2_inst": b"(icollections\nOrderedDict\np0\n(dp1\nb.",
        "py2_obj": b"(ccollections\nOrderedDict\no}b.",
        "py2_unicode": b"(V\\u00e9t\\U0001f600e\nVplain\nV\\\\u0041\nt.",
        "py2_persid": b"(Pabc\nQ)Q.",
        "binput_long": b"\x80\x02]r\xff\xff\x00\x00j\xff\xff\x00\x00\x86.",
        "popmark_dup": b"\x80\x02(K\x01K\x021K\x032\x86.",
        "pop": b"\x80\x02K\x01(0K\x020.",
        "long4": b"\x80\x02\x8b\x0a\x00\x00\x00" + b"\x01" * 9 + b"\x80.",
        "long1_edges": b"\x80\x02(\x8a\x00\x8a\x01\xff\x8a\x08" +
                       b"\xff" * 7 + b"\x7f\x8a\x09" + b"\x00" * 8 +
                       b"\x80t.",
        "stack_global_memo": b"\x80\x04\x8c\x0bcollections\x94\x8c\x0b"
                             b"OrderedDict\x94\x93\x94)R\x94h\x00h\x01\x93.",
        "newobj_ex": b"\x80\x04\x8c\x0bcollections\x8c\x0bOrderedDict\x93)}"
                     b"\x92.",
        "frame": b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01K\x02\x86.",
        "bytearray8": b"\x80\x05\x96\x03\x00\x00\x00\x00\x00\x00\x00abc.",
        "binbytes8_binunicode8": b"\x80\x04(\x8e\x02\x00\x00\x00\x00\x00\x00"
                                 b"\x00hi\x8d\x02\x00\x00\x00\x00\x00\x00\x00"
                                 b"yot.",
    }
    for label, data in cases.items():
        # Persistent ids and bare dicts load fine with the stub unpickler.
        emit("hand_" + label, data)


# ---------------------------------------------------------------------------
# Library outputs.


def numpy_pickles():
    import numpy as np
    arrays = {
        "f8": np.arange(12.0).reshape(3, 4),
        "i4_fortran": np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
        "u1": np.arange(256, dtype=np.uint8),
        "bool": np.array([True, False]),
        "c16": np.array([1 + 2j]),
        "U": np.array(["ab", "c\u00e9"]),
        "S": np.array([b"x", b"yz"]),
        "object": np.array([1, "two", None], dtype=object),
        "structured": np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8", (2,))]),
        "datetime": np.array(["2024-01-01"], dtype="M8[D]"),
        "scalar": np.float32(1.5),
        "zero_d": np.array(7),
        "empty": np.zeros((0, 3)),
        "big_endian": np.arange(4, dtype=">i8"),
    }
    for label, arr in arrays.items():
        for proto in (2, 4, 5):
            emit("numpy_%s_p%d" % (label, proto), pickle.dumps(arr, protocol=proto))


def torch_pickles():
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    objects = {
        "tensor_f32": torch.arange(6.0).reshape(2, 3),
        "tensors_dtypes": {str(d): torch.zeros(2, dtype=d) for d in
                           (torch.float16, torch.bfloat16, torch.int64,
                            torch.uint8, torch.bool, torch.complex64)},
        "linear_state": nn.Linear(4, 3).state_dict(),
        "mlp_state": nn.Sequential(nn.Linear(3, 4), nn.ReLU(),
                                   nn.Linear(4, 2)).state_dict(),
        "conv_bn_state": nn.Sequential(nn.Conv2d(1, 2, 3),
                                       nn.BatchNorm2d(2)).state_dict(),
        "full_module": nn.Sequential(nn.Linear(2, 2), nn.Tanh()),
        "checkpoint": {"epoch": 3, "model": nn.Linear(2, 1).state_dict(),
                       "opt": torch.optim.SGD(nn.Linear(2, 1).parameters(),
                                              lr=0.1).state_dict(),
                       "note": "ckpt"},
        "shared_storage": (lambda t: [t, t[1:], t.view(2, 2)])(torch.arange(4.0)),
        "sparse": torch.eye(3).to_sparse(),
        "param": nn.Parameter(torch.ones(2)),
    }
    try:
        import torchvision
        objects["resnet18_state"] = torchvision.models.resnet18().state_dict()
    except Exception:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        for label, obj in objects.items():
            path = os.path.join(tmp, label + ".pt")
            torch.save(obj, path)
            with zipfile.ZipFile(path) as z:
                name = [n for n in z.namelist() if n.endswith("/data.pkl")][0]
                emit("torch_zip_%s" % label, z.read(name))
            if label in ("tensor_f32", "linear_state", "checkpoint",
                         "full_module", "shared_storage", "tensors_dtypes"):
                for proto in (2, 4):
                    legacy = os.path.join(tmp, label + ".legacy")
                    torch.save(obj, legacy, _use_new_zipfile_serialization=False,
                               pickle_protocol=proto)
                    with open(legacy, "rb") as fh:
                        data = fh.read()
                    # magic, protocol, sys_info, object, storage keys.
                    emit("torch_legacy_%s_p%d" % (label, proto), data, streams=5)


def sklearn_pickles():
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.RandomState(0)
    X = rng.rand(40, 3)
    y = (X[:, 0] > 0.5).astype(int)
    models = {
        "logreg": LogisticRegression().fit(X, y),
        "forest": RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y),
        "pipeline": make_pipeline(StandardScaler(), SVC()).fit(X, y),
        "tree_reg": DecisionTreeRegressor(max_depth=3).fit(X, X[:, 1]),
    }
    for label, model in models.items():
        for proto in (2, 4, 5):
            emit("sklearn_%s_p%d" % (label, proto), pickle.dumps(model, protocol=proto))


def pandas_pickles():
    import numpy as np
    import pandas as pd
    frames = {
        "frame": pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"],
                               "c": [0.5, np.nan, 1.5]}),
        "series_dt": pd.Series(pd.date_range("2024-01-01", periods=4)),
        "categorical": pd.DataFrame({"k": pd.Categorical(["a", "b", "a"])}),
    }
    for label, frame in frames.items():
        for proto in (2, 4, 5):
            emit("pandas_%s_p%d" % (label, proto), pickle.dumps(frame, protocol=proto))


def dill_cloudpickle():
    import cloudpickle
    import dill

    def make_adder(n):
        return lambda x: x + n

    class Local:
        def __init__(self):
            self.v = 3

        def get(self):
            return self.v

    objs = {
        "lambda": lambda x: x * 2,
        "closure": make_adder(5),
        "local_class": Local,
        "local_instance": Local(),
        "func_with_defaults": (lambda a, b=[1, 2], *c, d="x", **e: a),
    }
    for label, obj in objs.items():
        for proto in (2, 4, 5):
            for modname, mod in (("dill", dill), ("cloudpickle", cloudpickle)):
                try:
                    data = mod.dumps(obj, protocol=proto)
                except Exception:
                    continue
                emit("%s_%s_p%d" % (modname, label, proto), data)


# ---------------------------------------------------------------------------
# joblib files (not plain pickles: array bytes follow the wrapper BUILDs).


def joblib_files():
    import joblib
    import numpy as np

    arrays = {
        "f8": np.arange(30.0).reshape(5, 6),
        "fortran": np.asfortranarray(np.arange(12, dtype=np.int16).reshape(3, 4)),
        "object": np.array([1, "two", None, (3,)], dtype=object),
        "structured": np.zeros(4, dtype=[("a", "<i4"), ("b", "<f8", (2,))]),
        "unicode": np.array(["ab", "c\u00e9d"]),
        "bytes": np.array([b"x", b"yzw"]),
        "datetime": np.array(["2024-01-01", "2025-06-30"], dtype="M8[D]"),
        "timedelta": np.array([1, 2], dtype="m8[s]"),
        "zero_d": np.array(3.5),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "big_endian": np.arange(5, dtype=">i8"),
        "bool": np.array([True, False, True]),
        "complex": np.array([1 + 1j, 2 - 3j], dtype=np.complex64),
        "float16": np.arange(7, dtype=np.float16),
        "subarray": np.zeros(2, dtype=("<f4", (2, 3))),
    }
    payloads = {label: {"x": arr, "meta": [label, 1]} for label, arr in
                arrays.items()}
    payloads["many"] = {"list": list(arrays.values()), "n": 5}
    payloads["matrix"] = np.matrix([[1, 2], [3, 4]])
    with tempfile.TemporaryDirectory() as tmp:
        for label, payload in payloads.items():
            for proto in (2, 3, 4, 5):
                for compress in (0, 3):
                    path = os.path.join(tmp, "f.joblib")
                    joblib.dump(payload, path, protocol=proto, compress=compress)
                    if compress:
                        # joblib's zlib container; the decoder sees the
                        # decompressed stream.
                        import zlib
                        with open(path, "rb") as fh:
                            data = zlib.decompress(fh.read())
                    else:
                        with open(path, "rb") as fh:
                            data = fh.read()
                    COUNTER[0] += 1
                    stem = "%04d_joblib_%s_p%d_z%d" % (COUNTER[0], label, proto, compress)
                    with open(os.path.join(OUT, "joblib", stem + ".pkl"), "wb") as fh:
                        fh.write(data)
                    lines = [["size", str(len(data))]]
                    flat = payload["list"] if label == "many" else (
                        [payload] if label == "matrix" else [payload["x"]])
                    for arr in flat:
                        lines.append(["array", arr.dtype.str,
                                      ",".join(str(d) for d in arr.shape)])
                    with open(os.path.join(OUT, "joblib", stem + ".ref"), "w") as fh:
                        for line in lines:
                            fh.write(json.dumps(line) + "\n")
                    INDEX.append("joblib/" + stem)


def main():
    plain_values()
    optimized_variants()
    handcrafted()
    numpy_pickles()
    torch_pickles()
    sklearn_pickles()
    pandas_pickles()
    dill_cloudpickle()
    joblib_files()
    with open(os.path.join(OUT, "index.txt"), "w") as fh:
        for stem in INDEX:
            fh.write(stem + "\n")
    print("generated %d files in %s" % (len(INDEX), OUT))


if __name__ == "__main__":
    main()
