"""Benign data generators: NumPy ``.npy``/``.npz`` (numeric, structured and
object arrays), pandas frames/series (pickle and ``to_pickle`` with
compression), joblib dumps of plain data, and dill/cloudpickle pickles of
benign data and of plain functions/lambdas (serialised by value: benign but
code-bearing, marked ``code_bearing`` in params)."""

from __future__ import annotations

import functools
import io
import pickle
import zipfile
from typing import Any

import numpy as np

import common
from benign_base import Ctx

NUMERIC_DTYPES = ["float32", "float64", "float16", "int64", "int32", "int8", "uint8",
                  "bool", "complex64"]


def _numeric(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bool":
        return rng.random(shape) > 0.5
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -1000), min(info.max, 1000), shape, dtype=dtype)
    if dtype.startswith("complex"):
        return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(dtype)
    return rng.normal(size=shape).astype(dtype)


def _object_payload(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    """Object arrays of benign Python data (need allow_pickle to load)."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    arr = np.empty(n, dtype=object)
    for i in range(n):
        if kind == "strings":
            arr[i] = " ".join(rng.choice(words, size=rng.integers(1, 5)))
        elif kind == "lists":
            arr[i] = [int(x) for x in rng.integers(0, 100, rng.integers(1, 6))]
        elif kind == "dicts":
            arr[i] = {"id": i, "label": str(rng.choice(words)),
                      "score": float(np.round(rng.random(), 4))}
        elif kind == "mixed":
            arr[i] = [None, i, str(rng.choice(words)), (i, float(i) / 2), {"k": [i]}][i % 5]
        elif kind == "ragged":
            arr[i] = rng.normal(size=rng.integers(1, 8)).astype("float32")
        else:
            raise ValueError(kind)
    return arr


def _array(rng: np.random.Generator, spec: dict) -> np.ndarray:
    kind = spec["kind"]
    if kind == "numeric":
        a = _numeric(rng, spec["dtype"], tuple(spec["shape"]))
        return np.asfortranarray(a) if spec.get("fortran") else a
    if kind == "structured":
        n = spec["shape"][0]
        a = np.zeros(n, dtype=[("id", "<i8"), ("x", "<f4", (3,)), ("name", "U8"),
                               ("flag", "?")])
        a["id"] = np.arange(n)
        a["x"] = rng.normal(size=(n, 3))
        a["name"] = [f"row{i}" for i in range(n)]
        a["flag"] = rng.random(n) > 0.5
        return a
    if kind == "object":
        return _object_payload(rng, spec["object_kind"], spec["shape"][0])
    raise ValueError(kind)


def write_npz(path, arrays: dict[str, np.ndarray], compressed: bool) -> None:
    """``np.savez[_compressed]`` layout (one ``<name>.npy`` member per array)
    with fixed member timestamps, so the bytes are reproducible."""
    ctype = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=ctype, allowZip64=True) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=True)
            zf.writestr(common.fixed_zipinfo(f"{name}.npy", ctype), buf.getvalue())


def gen_numpy(ctx: Ctx) -> None:
    p = ctx.params
    rng = np.random.default_rng(ctx.seed)
    arrays = {name: _array(rng, spec) for name, spec in p["arrays"].items()}
    has_obj = any(a.dtype == object for a in arrays.values())
    extra = {"object_arrays": has_obj}
    if p["container"] == "npy":
        out = ctx.path(p["file"])
        np.save(out, next(iter(arrays.values())), allow_pickle=True)
    else:
        out = ctx.path(p["file"])
        write_npz(out, arrays, p["container"] == "npz-compressed")
    ctx.emit(out, "numpy", extra)


def _frame(rng: np.random.Generator, kind: str, n: int) -> Any:
    import pandas as pd
    if kind == "mixed":
        return pd.DataFrame({
            "id": np.arange(n),
            "value": rng.normal(size=n),
            "count": rng.integers(0, 50, n),
            "name": [f"item-{i}" for i in range(n)],
            "category": pd.Categorical(rng.choice(["a", "b", "c"], size=n)),
            "flag": rng.random(n) > 0.5,
            "when": pd.date_range("2023-01-01", periods=n, freq="H"),
        })
    if kind == "timeseries":
        idx = pd.date_range("2022-06-01", periods=n, freq="D", tz="UTC")
        return pd.DataFrame(rng.normal(size=(n, 3)).cumsum(axis=0), index=idx,
                            columns=["open", "high", "low"])
    if kind == "multiindex":
        idx = pd.MultiIndex.from_product([[f"g{i}" for i in range(max(1, n // 10))],
                                          range(10)], names=["group", "step"])
        return pd.DataFrame({"loss": rng.random(len(idx)),
                             "acc": rng.random(len(idx))}, index=idx)
    if kind == "series":
        return pd.Series(rng.normal(size=n), name="metric",
                         index=[f"k{i}" for i in range(n)])
    if kind == "sparse":
        return pd.DataFrame({"s": pd.arrays.SparseArray(
            np.where(rng.random(n) > 0.8, rng.normal(size=n), 0.0))})
    raise ValueError(kind)


def gen_pandas(ctx: Ctx) -> None:
    p = ctx.params
    rng = np.random.default_rng(ctx.seed)
    obj = _frame(rng, p["frame"], p["rows"])
    out = ctx.path(p["file"])
    comp = p["compression"]
    if p["writer"] == "pickle":
        with open(out, "wb") as fh:
            pickle.dump(obj, fh, protocol=p["protocol"])
        ctx.emit(out, "pandas", loader="pickle.load")
        return
    if comp is None:
        obj.to_pickle(out, compression=None, protocol=p["protocol"])
    elif comp == "gzip":
        obj.to_pickle(out, compression={"method": "gzip", "mtime": 0}, protocol=p["protocol"])
    else:
        obj.to_pickle(out, compression=comp, protocol=p["protocol"])
    if comp == "zip":
        common.normalize_zip(out)
    ctx.emit(out, "pandas", loader="pandas.read_pickle")


def _plain_data(rng: np.random.Generator, kind: str) -> Any:
    if kind == "config":
        return {"model": {"hidden": int(rng.integers(16, 512)), "layers": int(rng.integers(1, 12)),
                          "dropout": float(np.round(rng.random() * 0.5, 2))},
                "train": {"lr": float(10.0 ** -rng.integers(2, 6)), "epochs": int(rng.integers(1, 50)),
                          "tags": ["baseline", "v2"]}}
    if kind == "embeddings":
        return {f"word{i}": rng.normal(size=16).astype("float32") for i in range(50)}
    if kind == "arrays":
        return [rng.normal(size=(8, 8)), rng.integers(0, 10, 20), np.arange(5, dtype="int8")]
    if kind == "nested":
        return {"meta": ("run", 3, None, True), "history": [
            {"epoch": e, "loss": float(np.round(rng.random(), 4))} for e in range(10)],
            "labels": {"cat", "dog", "fish"}, "bytes": b"\x00\x01benign"}
    raise ValueError(kind)


def gen_joblib_data(ctx: Ctx) -> None:
    import joblib
    p = ctx.params
    rng = np.random.default_rng(ctx.seed)
    out = ctx.path(p["file"])
    comp = p["compress"]
    joblib.dump(_plain_data(rng, p["data"]), out, compress=tuple(comp) if comp else 0)
    ctx.emit(out, "joblib")


# --- dill / cloudpickle ------------------------------------------------------

# Benign functions, compiled at generation time in a namespace that claims to
# be __main__ (as in a notebook or script), so dill and cloudpickle
# serialise them by value, code object included.
FUNCTION_SOURCES = {
    "normalize": "import numpy as np\n"
                 "def normalize(x, eps=1e-6):\n"
                 "    x = np.asarray(x, dtype=float)\n"
                 "    return (x - x.mean()) / (x.std() + eps)\n",
    "tokenize": "def tokenize(text, lower=True):\n"
                "    text = text.lower() if lower else text\n"
                "    return [t for t in text.replace(',', ' ').split() if t]\n",
    "collate": "def collate(batch):\n"
               "    xs = [b[0] for b in batch]\n"
               "    ys = [b[1] for b in batch]\n"
               "    return xs, ys\n",
    "accuracy": "def accuracy(y_true, y_pred):\n"
                "    hits = sum(int(a == b) for a, b in zip(y_true, y_pred))\n"
                "    return hits / max(1, len(y_true))\n",
    "scale_closure": "def make_scaler(factor):\n"
                     "    def scale(x):\n"
                     "        return [v * factor for v in x]\n"
                     "    return scale\n"
                     "scale = make_scaler(2.5)\n",
    "lambda": "sigmoid = lambda z: 1.0 / (1.0 + __import__('math').exp(-z))\n",
    "lr_lambda": "warmup = 100\n"
                 "lr_lambda = lambda step: min(1.0, (step + 1) / warmup)\n",
}

FUNCTION_NAMES = {"normalize": "normalize", "tokenize": "tokenize", "collate": "collate",
                  "accuracy": "accuracy", "scale_closure": "scale", "lambda": "sigmoid",
                  "lr_lambda": "lr_lambda"}


def make_function(name: str):
    ns: dict[str, Any] = {"__name__": "__main__"}
    code = compile(FUNCTION_SOURCES[name], f"<corpus:{name}>", "exec")
    exec(code, ns)  # our own fixed source above, nothing external
    return ns[FUNCTION_NAMES[name]]


def _code_object(kind: str, function: str | None) -> Any:
    if kind == "function":
        return make_function(function)
    if kind == "pipeline":  # a dict of preprocessing callables + data
        return {"preprocess": make_function("normalize"), "tokenize": make_function("tokenize"),
                "vocab": {w: i for i, w in enumerate(["a", "b", "c", "d"])}}
    if kind == "partial":
        return functools.partial(make_function("accuracy"), [1, 0, 1])
    raise ValueError(kind)


def gen_serialized(ctx: Ctx) -> None:
    p = ctx.params
    rng = np.random.default_rng(ctx.seed)
    code = p["payload"] in ("function", "pipeline", "partial")
    obj = _code_object(p["payload"], p.get("function")) if code else \
        _plain_data(rng, p["payload"])
    out = ctx.path(p["file"])
    extra = {"code_bearing": code}
    if p["writer"] == "dill":
        import dill
        with open(out, "wb") as fh:
            dill.dump(obj, fh, protocol=p["protocol"], recurse=p.get("recurse", False))
        ctx.emit(out, "dill", extra)
    else:
        import cloudpickle
        with open(out, "wb") as fh:
            cloudpickle.dump(obj, fh, protocol=p["protocol"])
        ctx.emit(out, "cloudpickle", extra)
