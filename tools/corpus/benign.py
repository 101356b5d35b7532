"""Benign side of the dynahug corpus: realistic model files in task clusters.

    plan(small, seed) -> list[task]       # what would be generated (cheap)
    generate(out_dir, small, seed, jobs=1) -> list[manifest entry]

A task is one model/data specification (a near-duplicate group): it writes
one or more files (e.g. fp32 + fp16 + sharded saves of one transformer, or
one estimator under several serialisations) and they all share the task's
group, hence its split.  Tasks are independent and seed every RNG from
(seed, task key), so the output does not depend on scheduling or --jobs.

Clusters (see README.md): transformer, vision, checkpoint, classic-ml,
numpy-pandas, torch-module, python-objects.
"""

from __future__ import annotations

import os
import pathlib
import pickle
import random
import sys
from typing import Any

# Single-threaded numeric libraries: we parallelise across processes, and
# threaded BLAS/OpenMP would oversubscribe the 2 cores and make fork unsafe.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

CLUSTERS = ("transformer", "vision", "checkpoint", "classic-ml", "numpy-pandas",
            "torch-module", "python-objects")

# generator name -> "module:function"
GENERATORS = {
    "transformer": "benign_torch:gen_transformer",
    "vision": "benign_torch:gen_vision",
    "module": "benign_torch:gen_module",
    "checkpoint": "benign_torch:gen_checkpoint",
    "training-args": "benign_torch:gen_training_args",
    "tokenizer": "benign_torch:gen_tokenizer",
    "classic": "benign_classic:gen_classic",
    "numpy": "benign_data:gen_numpy",
    "pandas": "benign_data:gen_pandas",
    "joblib-data": "benign_data:gen_joblib_data",
    "serialized": "benign_data:gen_serialized",
    "archive": "benign_archive:gen_archive",
}


def _task(cluster: str, gen: str, key: str, params: dict, n_files: int,
          cost: float = 1.0) -> dict:
    return {"cluster": cluster, "gen": gen, "key": f"{cluster}/{key}", "params": params,
            "n_files": n_files, "cost": cost}


# --- the plan -----------------------------------------------------------------

# Must match benign_torch.TRANSFORMER_FAMILIES (checked by the tests).
TRANSFORMER_FAMILIES = ["bert", "roberta", "distilbert", "gpt2", "llama", "qwen2", "opt",
                        "t5", "bart"]
TRANSFORMER_SAVE_PATTERNS = [
    [{"kind": "zip", "dtype": "fp32"}],
    [{"kind": "zip", "dtype": "fp16"},
     {"kind": "legacy", "dtype": "fp32", "file": "pytorch_model.legacy.bin"}],
    [{"kind": "zip", "dtype": "bf16"}, {"kind": "sharded", "dtype": "fp32", "shards": 2}],
    [{"kind": "zip", "dtype": "fp32"}, {"kind": "zip", "dtype": "fp16", "file": "model.fp16.pt"}],
    [{"kind": "legacy", "dtype": "fp16"}, {"kind": "sharded", "dtype": "bf16", "shards": 3}],
    [{"kind": "zip", "dtype": "bf16", "file": "model.bin"}],
    [{"kind": "sharded", "dtype": "fp16", "shards": 4}],
]


def _n_transformer_files(saves: list[dict]) -> int:
    return sum(s["shards"] if s["kind"] == "sharded" else 1 for s in saves)


def plan_transformer(small: bool, r: random.Random) -> list[dict]:
    tasks = []
    per_family = 1 if small else 7
    for fi, family in enumerate(TRANSFORMER_FAMILIES):
        for i in range(per_family):
            pattern = (fi + i) % len(TRANSFORMER_SAVE_PATTERNS)
            saves = TRANSFORMER_SAVE_PATTERNS[pattern]
            hidden = r.choice([16, 32, 32, 64, 64, 128])
            params = {"family": family, "vocab": r.choice([500, 1000, 2000, 4000, 8000]),
                      "hidden": hidden, "layers": r.choice([1, 2, 2, 3, 4, 6]),
                      "variant": i, "saves": saves, "name": f"{family}-{i:02d}"}
            cost = params["vocab"] * hidden / 1e5 + params["layers"] * hidden ** 2 / 1e4
            tasks.append(_task("transformer", "transformer", params["name"], params,
                               _n_transformer_files(saves), cost=cost))
    return tasks


VISION_SAVE_PATTERNS = [
    [{"kind": "state_dict", "file": "pytorch_model.bin"}],
    [{"kind": "state_dict", "file": "model.pth"}, {"kind": "module", "file": "model_full.pt"}],
    [{"kind": "state_dict", "dtype": "fp16", "file": "model_fp16.pth"},
     {"kind": "wrapped", "file": "checkpoint_best.pth.tar"}],
    [{"kind": "state_dict_legacy", "file": "weights.pth"},
     {"kind": "module_legacy", "file": "model_legacy.pt"}],
    [{"kind": "module", "file": "model.pt"}],
    [{"kind": "state_dict_tar", "file": "model_best.pth.tar"}],
]
VISION_ARCHS = ["resnet-basic", "resnet-bottleneck", "vgg", "mobilenet_v2",
                "mobilenet_v3_small", "mobilenet_v3_large", "squeezenet", "shufflenet_v2",
                "mnasnet", "efficientnet", "regnet", "densenet", "vit", "convnext", "swin",
                "lenet", "simple-cnn"]
NODE_ARCHS = {"lenet", "simple-cnn"}  # no importable class: state dicts only


def plan_vision(small: bool, r: random.Random) -> list[dict]:
    tasks = []
    per_arch = 1 if small else 4
    for ai, arch in enumerate(VISION_ARCHS):
        for i in range(per_arch):
            pattern = (ai + i) % len(VISION_SAVE_PATTERNS)
            saves = VISION_SAVE_PATTERNS[pattern]
            if arch in NODE_ARCHS:
                saves = [s for s in saves if s["kind"] in ("state_dict", "state_dict_legacy",
                                                           "state_dict_tar", "wrapped")] or \
                    [{"kind": "state_dict", "file": "model.pth"}]
            params = {"arch": arch, "width": 1 + (i + ai) % 3, "num_classes":
                      r.choice([2, 10, 10, 100]), "warm_bn": i % 2 == 0, "saves": saves,
                      "name": f"{arch}-{i:02d}"}
            tasks.append(_task("vision", "vision", params["name"], params, len(saves),
                               cost=2.0))
    if not small:  # one full-size torchvision model, as hubs serve them
        params = {"arch": "resnet18", "width": 1, "num_classes": 1000, "warm_bn": False,
                  "saves": [{"kind": "state_dict", "dtype": "fp16",
                             "file": "resnet18-fp16.pth"}], "name": "resnet18-full"}
        tasks.append(_task("vision", "vision", params["name"], params, 1, cost=8.0))
    return tasks


MODULE_KINDS = ["mlp", "cnn", "lstm", "gru", "transformer-encoder", "embedding-bag",
                "autoencoder", "conv1d"]
MODULE_SAVE_PATTERNS = [
    [{"kind": "module", "file": "model.pt"}],
    [{"kind": "module", "file": "model.pt"}, {"kind": "script", "file": "model_scripted.pt"}],
    [{"kind": "module_legacy", "file": "model.pkl"}, {"kind": "trace", "file": "traced.pt"}],
    [{"kind": "script", "file": "model.torchscript"}],
    [{"kind": "trace", "file": "model.jit"}, {"kind": "module", "file": "model.pth"}],
]
NOT_SCRIPTABLE = {"transformer-encoder"}  # torch 1.13 scripts it only partly


def plan_module(small: bool, r: random.Random) -> list[dict]:
    tasks = []
    per_kind = 1 if small else 5
    for ki, kind in enumerate(MODULE_KINDS):
        for i in range(per_kind):
            saves = MODULE_SAVE_PATTERNS[(ki + i) % len(MODULE_SAVE_PATTERNS)]
            if kind in NOT_SCRIPTABLE:
                saves = [dict(s, kind="trace") if s["kind"] == "script" else s for s in saves]
            params = {"kind": kind, "size": 1 + r.randrange(4), "saves": saves,
                      "name": f"{kind}-{i:02d}"}
            jit = any(s["kind"] in ("script", "trace") for s in saves)
            tasks.append(_task("torch-module", "module", params["name"], params, len(saves),
                               cost=3.0 if jit else 1.0))
    return tasks


def plan_checkpoint(small: bool, r: random.Random) -> list[dict]:
    tasks = []
    optimizers = ["sgd", "adam", "adamw", "rmsprop", "adagrad"]
    schedulers = ["none", "step", "cosine", "onecycle", "plateau", "exponential",
                  "linear-warmup"]
    n_hf = 1 if small else 8
    for i in range(n_hf):
        params = {"style": "hf-trainer", "model": "transformer", "size": 1 + i % 3,
                  "optimizer": "adamw", "scheduler": "linear-warmup", "lr": 5e-5,
                  "steps": 2 + i % 4, "name": f"hf-run-{i:02d}"}
        tasks.append(_task("checkpoint", "checkpoint", params["name"], params, 5, cost=3.0))
    styles = [("plain", "checkpoint.pt"), ("lightning", "last.ckpt"), ("timm", "model_best.pth.tar"),
              ("plain", "ckpt_epoch.pth")]
    n_single = 4 if small else 32
    for i in range(n_single):
        style, fname = styles[i % len(styles)]
        params = {"style": style, "file": fname, "model": ["mlp", "transformer"][(i // 4) % 2],
                  "size": 1 + r.randrange(3), "optimizer": optimizers[i % len(optimizers)],
                  "scheduler": schedulers[i % len(schedulers)],
                  "lr": r.choice([1e-3, 3e-4, 1e-4, 0.01, 0.1]), "steps": 2 + r.randrange(4),
                  "rng": i % 2 == 0, "legacy": i % 4 == 3, "tar": i % 8 == 5,
                  "name": f"{style}-{i:02d}"}
        tasks.append(_task("checkpoint", "checkpoint", params["name"], params, 1, cost=1.5))
    args_kinds = [("trainer", "torch"), ("seq2seq", "torch"), ("sft", "torch"),
                  ("trainer", "pickle")]
    n_args = 2 if small else 12
    for i in range(n_args):
        kind, container = args_kinds[i % len(args_kinds)]
        params = {"kind": kind, "container": container, "run": f"run-{i:02d}",
                  "name": f"args-{kind}-{i:02d}"}
        tasks.append(_task("checkpoint", "training-args", params["name"], params, 1, cost=0.5))
    tok = [("bert", "vocab", "pickle", "vocab.pkl"), ("gpt2", "bpe", "pickle", "tokenizer.pkl"),
           ("t5", "full", "torch", "tokenizer.pt"), ("bert", "full", "pickle", "tokenizer.pickle"),
           ("gpt2", "vocab", "torch", "vocab.pt"), ("t5", "bpe", "pickle", "spm_vocab.pkl")]
    n_tok = 3 if small else 24
    for i in range(n_tok):
        style, kind, container, fname = tok[i % len(tok)]
        params = {"style": style, "kind": kind, "container": container, "file": fname,
                  "protocol": [2, 3, 4, 5][i % 4], "vocab": r.choice([500, 1000, 5000, 20000]),
                  "name": f"tokenizer-{style}-{i:02d}"}
        tasks.append(_task("checkpoint", "tokenizer", params["name"], params, 1, cost=0.5))
    return tasks


def plan_classic(small: bool, r: random.Random) -> list[dict]:
    from benign_classic import ESTIMATORS, N_PLAIN_SERIALIZATIONS, SERIALIZATIONS
    tasks = []
    n_ser = len(SERIALIZATIONS)
    k = 0
    for ei, est in enumerate(sorted(ESTIMATORS)):
        for v in range(1 if small else 2):
            if small:
                sers = [SERIALIZATIONS[ei % n_ser]]
            else:
                # One plain save (pickle p2/p4/p5 or uncompressed joblib: what
                # most hubs serve) plus one or two compressed joblib saves.
                sers = [SERIALIZATIONS[(ei + v) % N_PLAIN_SERIALIZATIONS]]
                n_comp = n_ser - N_PLAIN_SERIALIZATIONS  # 5 compressors x 3 levels
                for _ in range(1 + (ei + v) % 2):
                    # stride 3 so consecutive picks use different compressors
                    # (hence different file suffixes); all 15 are covered
                    sers.append(SERIALIZATIONS[N_PLAIN_SERIALIZATIONS +
                                               (3 * k + k // 5) % n_comp])
                    k += 1
            params = {"estimator": est, "variant": v, "n_samples": r.choice([60, 120, 200]),
                      "n_features": r.choice([4, 6, 8, 12]), "wrap": (ei + v) % 5 == 4,
                      "serializations": sers, "name": f"{est}-v{v}"}
            tasks.append(_task("classic-ml", "classic", params["name"], params, len(sers),
                               cost=1.5))
    return tasks


def plan_numpy_pandas(small: bool, r: random.Random) -> list[dict]:
    from benign_data import NUMERIC_DTYPES
    tasks = []
    object_kinds = ["strings", "lists", "dicts", "mixed", "ragged"]
    n_npy = 6 if small else 40
    for i in range(n_npy):
        if i % 4 == 3:
            spec = {"kind": "object", "object_kind": object_kinds[(i // 4) % len(object_kinds)],
                    "shape": [r.randint(5, 60)]}
        elif i % 7 == 5:
            spec = {"kind": "structured", "shape": [r.randint(5, 100)]}
        else:
            spec = {"kind": "numeric", "dtype": NUMERIC_DTYPES[i % len(NUMERIC_DTYPES)],
                    "shape": [r.randint(1, 64) for _ in range(1 + i % 3)],
                    "fortran": i % 5 == 1}
        names = ["embeddings", "features", "labels", "weights", "mean", "arr"]
        params = {"container": "npy", "arrays": {"arr_0": spec},
                  "file": f"npy-{i:02d}/{names[i % len(names)]}.npy"}
        tasks.append(_task("numpy-pandas", "numpy", f"npy-{i:02d}", params, 1, cost=0.2))
    n_npz = 3 if small else 20
    for i in range(n_npz):
        arrays = {}
        for j in range(1 + i % 4):
            name = [f"arr_{j}", ["W", "b", "mean", "var", "vocab", "ids"][j % 6]][i % 2]
            arrays[name] = {"kind": "object", "object_kind": "strings", "shape": [10]} \
                if (i % 3 == 2 and j == 0) else \
                {"kind": "numeric", "dtype": NUMERIC_DTYPES[(i + j) % 6],
                 "shape": [r.randint(2, 40), r.randint(1, 16)]}
        container = "npz-compressed" if i % 2 else "npz"
        params = {"container": container, "arrays": arrays, "file": f"npz-{i:02d}/data.npz"}
        tasks.append(_task("numpy-pandas", "numpy", f"npz-{i:02d}", params, 1, cost=0.3))
    frames = ["mixed", "timeseries", "multiindex", "series", "sparse"]
    writers = [("pickle", None, ".pkl"), ("to_pickle", None, ".pkl"),
               ("to_pickle", "gzip", ".pkl.gz"), ("to_pickle", "bz2", ".pkl.bz2"),
               ("to_pickle", "xz", ".pkl.xz"), ("to_pickle", "zip", ".pkl.zip")]
    n_pd = 6 if small else 30
    for i in range(n_pd):
        writer, comp, sfx = writers[i % len(writers)]
        params = {"frame": frames[i % len(frames)], "rows": r.choice([10, 50, 200]),
                  "writer": writer, "compression": comp, "protocol": [2, 4, 5][i % 3],
                  "file": f"pandas-{i:02d}/frame{sfx}"}
        tasks.append(_task("numpy-pandas", "pandas", f"pandas-{i:02d}", params, 1, cost=0.3))
    comps = [None, ["zlib", 3], ["gzip", 6], ["bz2", 9], ["xz", 1], ["lzma", 5]]
    datas = ["config", "embeddings", "arrays", "nested"]
    n_jl = 6 if small else 15
    for i in range(n_jl):
        comp = comps[i % len(comps)]
        sfx = {None: "", "zlib": ".z", "gzip": ".gz", "bz2": ".bz2", "xz": ".xz",
               "lzma": ".lzma"}[comp[0] if comp else None]
        params = {"data": datas[i % len(datas)], "compress": comp,
                  "file": f"joblib-{i:02d}/data.joblib{sfx}"}
        tasks.append(_task("numpy-pandas", "joblib-data", f"joblib-{i:02d}", params, 1,
                           cost=0.3))
    return tasks


def plan_python_objects(small: bool, r: random.Random) -> list[dict]:
    from benign_data import FUNCTION_SOURCES
    tasks = []
    payloads = ["config", "function", "nested", "pipeline", "arrays", "partial", "embeddings",
                "function"]
    fnames = sorted(FUNCTION_SOURCES)
    n = 8 if small else 44
    for i in range(n):
        writer = ["dill", "cloudpickle"][i % 2]
        payload = payloads[(i // 2) % len(payloads)]
        params = {"writer": writer, "payload": payload, "protocol": [2, 3, 4, 5][(i // 3) % 4],
                  "recurse": writer == "dill" and i % 4 == 0,
                  "file": f"{writer}-{i:02d}/object.{'dill' if writer == 'dill' else 'pkl'}"}
        if payload == "function":
            params["function"] = fnames[i % len(fnames)]
        tasks.append(_task("python-objects", "serialized", f"{writer}-{i:02d}", params, 1,
                           cost=0.2))
    return tasks


ARCHIVE_WRAPPERS = [("zip", "model.zip"), ("tar", "model.tar"), ("tar.gz", "model.tar.gz"),
                    ("7z", "model.7z")]


def plan_archives(small: bool, r: random.Random) -> list[dict]:
    """Model folders packed into zip/tar/tar.gz/7z; each archive belongs to
    the cluster of the model inside it."""
    inner_kinds = [
        ("vision", "vision", lambda i: {
            "arch": ["mobilenet_v2", "resnet-basic", "squeezenet", "convnext"][i % 4],
            "width": 1 + i % 2, "num_classes": 10, "warm_bn": False,
            "saves": [{"kind": "state_dict", "file": "model.pth"}], "name": "model"}),
        ("transformer", "transformer", lambda i: {
            "family": TRANSFORMER_FAMILIES[i % len(TRANSFORMER_FAMILIES)],
            "vocab": r.choice([500, 1000]), "hidden": 32, "layers": 2, "variant": i,
            "saves": [{"kind": "sharded", "dtype": "fp32", "shards": 2}] if i % 2 else
                     [{"kind": "zip", "dtype": "fp32"}], "name": "model"}),
        ("classic-ml", "classic", lambda i: {
            "estimator": ["random-forest-classifier", "pipeline-scaler-logreg", "svc",
                          "xgb-classifier"][i % 4], "variant": 0, "n_samples": 100,
            "n_features": 6, "wrap": False,
            "serializations": [{"via": "pickle", "protocol": 4, "suffix": ".pkl"}] if i % 2 else
                              [{"via": "joblib", "compress": None, "suffix": ".joblib"}],
            "name": "model"}),
        ("torch-module", "module", lambda i: {
            "kind": ["mlp", "cnn", "lstm"][i % 3], "size": 2,
            "saves": [{"kind": "module", "file": "model.pt"}], "name": "model"}),
        ("checkpoint", "checkpoint", lambda i: {
            "style": "plain", "file": "checkpoint.pt", "model": "mlp", "size": 1,
            "optimizer": "adam", "scheduler": "step", "lr": 1e-3, "steps": 2, "rng": True,
            "legacy": False, "tar": False, "name": "model"}),
    ]
    tasks = []
    n = 5 if small else 30
    for i in range(n):
        wrapper, fname = ARCHIVE_WRAPPERS[i % len(ARCHIVE_WRAPPERS)]
        cluster, gen, make = inner_kinds[i % len(inner_kinds)]
        params = {"wrapper": wrapper, "file": f"archive-{i:02d}/{fname}", "inner_gen": gen,
                  "inner_params": make(i // len(inner_kinds))}
        tasks.append(_task(cluster, "archive", f"archive-{i:02d}", params, 1, cost=2.0))
    return tasks


def plan(small: bool, seed: int) -> list[dict]:
    """Every task ``generate`` would run, in a fixed order; cheap (no model
    libraries are imported beyond sklearn/numpy metadata).  The planned file
    count is ``sum(t['n_files'] for t in plan(...))``."""
    r = random.Random(f"plan:{seed}:{small}")
    tasks: list[dict] = []
    for fn in (plan_transformer, plan_vision, plan_module, plan_checkpoint, plan_classic,
               plan_numpy_pandas, plan_python_objects, plan_archives):
        tasks.extend(fn(small, r))
    keys = [t["key"] for t in tasks]
    assert len(keys) == len(set(keys)), "duplicate task keys"
    return tasks


# --- execution ------------------------------------------------------------------

_OUT: dict[str, Any] = {}
WARM_IMPORTS = (
    "torchvision.models", "torchvision.models.resnet", "torchvision.models.vgg",
    "torchvision.models.efficientnet", "torchvision.models.regnet",
    "torchvision.models.densenet", "torchvision.models.vision_transformer",
    "torchvision.models.convnext", "torchvision.models.swin_transformer",
    "torch.jit", "torch._sources", "sklearn.calibration", "sklearn.cluster",
    "sklearn.compose", "sklearn.decomposition", "sklearn.ensemble",
    "sklearn.feature_extraction.text", "sklearn.linear_model", "sklearn.model_selection",
    "sklearn.naive_bayes", "sklearn.neighbors", "sklearn.neural_network",
    "sklearn.pipeline", "sklearn.preprocessing", "sklearn.svm", "sklearn.tree",
    "xgboost", "pandas", "joblib", "dill", "cloudpickle", "bz2", "lzma", "gzip",
)


def _init_worker(out_dir: str, seed: int) -> None:
    _OUT["dir"], _OUT["seed"] = out_dir, seed
    import importlib
    import warnings
    warnings.filterwarnings("ignore")
    import torch
    torch.set_num_threads(1)
    # Import everything the generators import lazily, once, before forking:
    # a forked child's imports die with it.
    for target in sorted(set(GENERATORS.values())):
        importlib.import_module(target.split(":")[0])
    for name in WARM_IMPORTS:
        importlib.import_module(name)
    import gc
    gc.collect()
    gc.freeze()  # children's GC passes then do not touch (copy) inherited pages


def _run_task_here(task: dict, out_dir: str, seed: int) -> list[dict]:
    import importlib
    from benign_base import Ctx
    mod_name, fn_name = GENERATORS[task["gen"]].split(":")
    fn = getattr(importlib.import_module(mod_name), fn_name)
    ctx = Ctx(pathlib.Path(out_dir), task, seed)
    fn(ctx)
    if len(ctx.entries) != task["n_files"]:
        raise RuntimeError(f"task {task['key']}: planned {task['n_files']} files, "
                           f"wrote {len(ctx.entries)}")
    return ctx.entries


def _run_batch_here(batch: list[dict], out_dir: str, seed: int) -> list[dict]:
    entries: list[dict] = []
    for task in batch:
        entries.extend(_run_task_here(task, out_dir, seed))
    return entries


def _run_batch_forked(batch: list[dict], out_dir: str, seed: int) -> list[dict]:
    """Runs a batch of tasks, in order, in a child forked from the (idle)
    worker, so every batch starts from the same process state whatever ran
    before it.  Output bytes depend on process history otherwise:
    TorchScript mangles class names after earlier compilations, and pickle
    memoises strings by identity, which string interning by earlier work
    changes (e.g. an LSTM's _flat_weights_names).  Batches are fixed by the
    plan (see make_batches), not by scheduling, and the worker itself never
    runs a generator."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        code = 0
        try:
            payload = pickle.dumps(("ok", _run_batch_here(batch, out_dir, seed)))
        except BaseException as e:  # report any failure to the parent
            import traceback
            payload = pickle.dumps(("error", f"{batch[0]['key']}..: {e!r}\n"
                                              f"{traceback.format_exc()}"))
            code = 1
        with os.fdopen(w, "wb") as f:
            f.write(payload)
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"batch {batch[0]['key']}..: forked child died "
                           f"(status {status})")
    kind, value = pickle.loads(data)
    if kind != "ok":
        raise RuntimeError(value)
    return value


def _run_batch(batch: list[dict]) -> list[dict]:
    return _run_batch_forked(batch, _OUT["dir"], _OUT["seed"])


def make_batches(tasks: list[dict], max_tasks: int = 8) -> list[list[dict]]:
    """Partitions the plan into fixed batches: runs of consecutive tasks of
    the same generator, at most ``max_tasks`` each.  Depends only on the
    plan, so outputs do not depend on --jobs or scheduling; batching only
    amortises the fork (~50 ms for a worker with torch+sklearn loaded)."""
    batches: list[list[dict]] = []
    for t in tasks:
        if batches and batches[-1][0]["gen"] == t["gen"] and len(batches[-1]) < max_tasks:
            batches[-1].append(t)
        else:
            batches.append([t])
    return batches


def generate(out_dir: pathlib.Path, small: bool, seed: int, jobs: int = 1) -> list[dict]:
    """Writes the benign corpus under ``out_dir/benign`` and returns its
    manifest entries (sorted by path).  ``jobs`` worker processes."""
    out_dir = pathlib.Path(out_dir).resolve()
    if os.environ.get("PYTHONHASHSEED") != "0":
        print("benign.generate: warning: PYTHONHASHSEED is not 0; string-set ordering "
              "(and so some files' bytes) will vary between runs. Use generate.py.",
              file=sys.stderr)
    batches = make_batches(plan(small, seed))
    # Longest first so the pool finishes evenly; results do not depend on order.
    order = sorted(batches, key=lambda b: (-sum(t["cost"] for t in b), b[0]["key"]))
    entries: list[dict] = []
    # Always a pool (also for jobs=1) so batches fork from identical workers.
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    with ctx.Pool(max(1, jobs), initializer=_init_worker,
                  initargs=(str(out_dir), seed)) as pool:
        for got in pool.imap_unordered(_run_batch, order, chunksize=1):
            entries.extend(got)
    return sorted(entries, key=lambda e: e["path"])
