"""Tests of the benign corpus generator (tools/corpus): generates the --small
benign corpus twice into temp dirs and checks clusters, manifest schema,
hashes, container formats, loading with each file's real loader (these are
benign files), content properties, determinism and split rules; plus the
full-mode plan counts (computed without generating) and the helpers'
error paths.

Run: /usr/bin/python3 -m unittest discover -s tests/tools -p "test_benign*.py"
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pathlib
import pickle
import pickletools
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import zipfile

REPO = pathlib.Path(__file__).resolve().parents[2]
CORPUS = REPO / "tools" / "corpus"
PYTHON = os.environ.get("DYNAHUG_PYTHON", "/usr/bin/python3")
sys.path.insert(0, str(CORPUS))

import benign  # noqa: E402
import common  # noqa: E402

SMALL_LIMIT_S = 60.0


def run_generate(out: pathlib.Path, *args: str,
                 corpus: pathlib.Path = CORPUS) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    proc = subprocess.run([PYTHON, str(corpus / "generate.py"), "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600)
    return proc, time.monotonic() - t0


def sha_map(root: pathlib.Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def pickle_globals(data: bytes) -> set[str]:
    """module.name of every GLOBAL / STACK_GLOBAL in a pickle stream."""
    out, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
            strings.append(arg)
        elif op.name == "GLOBAL":
            out.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            out.add(f"{strings[-2]}.{strings[-1]}")
    return out


def torch_zip_pickle(path: pathlib.Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        name = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
        return zf.read(name)


class SmallBenignCorpus(unittest.TestCase):
    tmp: tempfile.TemporaryDirectory
    out: pathlib.Path
    manifest: dict
    entries: list[dict]

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="dynahug-corpus-test-")
        base = pathlib.Path(cls.tmp.name)
        cls.out, cls.out2 = base / "run1", base / "run2"
        cls.proc1, cls.t1 = run_generate(cls.out, "--small", "--only", "benign", "--seed", "0")
        # The second run uses another --jobs and a copy of the tool in another
        # directory: neither may change a byte.
        copy = base / "tool-copy"
        copy.mkdir()
        for src in CORPUS.glob("*.py"):
            shutil.copy(src, copy / src.name)
        cls.proc2, cls.t2 = run_generate(cls.out2, "--small", "--only", "benign", "--seed", "0",
                                         "--jobs", "1", corpus=copy)
        print(f"\n[corpus] --small --only benign: {cls.t1:.1f}s (jobs=2), "
              f"{cls.t2:.1f}s (jobs=1)", file=sys.stderr)
        if cls.proc1.returncode == 0:
            cls.manifest = json.loads((cls.out / "manifest.json").read_text())
            cls.entries = cls.manifest["files"]

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        self.assertEqual(self.proc1.returncode, 0, self.proc1.stderr[-3000:])
        self.assertEqual(self.proc2.returncode, 0, self.proc2.stderr[-3000:])

    # --- shape of the corpus ------------------------------------------------

    def test_small_mode_is_fast_enough(self):
        self.assertLess(self.t1, SMALL_LIMIT_S)

    def test_every_cluster_present(self):
        clusters = collections.Counter(e["cluster"] for e in self.entries)
        self.assertEqual(set(clusters), set(benign.CLUSTERS))
        self.assertGreaterEqual(len(clusters), 6)

    def test_file_count_matches_plan(self):
        planned = benign.plan(True, 0)
        self.assertEqual(len(self.entries), sum(t["n_files"] for t in planned))
        by_task = collections.Counter(e["params"]["task"] for e in self.entries)
        self.assertEqual(by_task, {t["key"]: t["n_files"] for t in planned})

    def test_manifest_header_and_schema(self):
        self.assertEqual(self.manifest["version"], 1)
        self.assertEqual(self.manifest["seed"], 0)
        self.assertIs(self.manifest["small"], True)
        paths = [e["path"] for e in self.entries]
        self.assertEqual(paths, sorted(paths))
        self.assertEqual(len(paths), len(set(paths)))
        for e in self.entries:
            with self.subTest(path=e["path"]):
                self.assertEqual(common.validate_entry(e), [])
                self.assertEqual(e["label"], "benign")
                self.assertIsNone(e["technique"])
                self.assertTrue(e["path"].startswith(f"benign/{e['cluster']}/"))
                self.assertIn(e["params"]["loader"], {
                    "torch.load", "joblib.load", "numpy.load", "pandas.read_pickle",
                    "pickle.load", "dill.load", "archive"})

    def test_sha256_size_and_format_match_the_files(self):
        for e in self.entries:
            with self.subTest(path=e["path"]):
                f = self.out / e["path"]
                data = f.read_bytes()
                self.assertEqual(len(data), e["size"])
                self.assertEqual(hashlib.sha256(data).hexdigest(), e["sha256"])
                self.assertEqual(common.sniff_format(f), e["format"])

    def test_archives_cover_the_malicious_side_containers(self):
        # zip and 7z wrappers exist on the malicious side; benign ones must
        # too, or the container would give the label away.
        arch = [e for e in self.entries if e["params"]["loader"] == "archive"]
        self.assertEqual({e["format"] for e in arch}, {"zip", "tar", "gzip", "7z"})
        self.assertGreaterEqual(len({e["cluster"] for e in arch}), 4)

    def test_container_variety(self):
        formats = {e["format"] for e in self.entries}
        for fmt in ("raw-pickle", "torch-zip", "torchscript-zip", "torch-legacy",
                    "torch-legacy-tar", "joblib",
                    "npy", "npz", "zip", "gzip", "bzip2", "xz", "lzma", "zlib"):
            self.assertIn(fmt, formats)
        libraries = {e["library"] for e in self.entries}
        self.assertLessEqual({"torch", "sklearn", "xgboost", "joblib", "numpy", "pandas",
                              "dill", "cloudpickle", "pickle"}, libraries)

    # --- determinism and splits ---------------------------------------------

    def test_two_runs_are_byte_identical(self):
        a = sha_map(self.out / "benign")
        b = sha_map(self.out2 / "benign")
        self.assertEqual(len(a), len(b))
        diff = sorted(k for k in a if a.get(k) != b.get(k))
        self.assertEqual(diff, [])
        self.assertEqual((self.out / "manifest.json").read_bytes(),
                         (self.out2 / "manifest.json").read_bytes())

    def test_groups_never_span_splits(self):
        self.assertEqual(common.check_groups(self.entries), [])
        splits = collections.Counter(e["split"] for e in self.entries)
        self.assertEqual(set(splits), {"train", "val", "test"})
        for e in self.entries:
            self.assertEqual(e["split"], common.assign_split(e["group"], "benign"))
        # one group per task: all files of a model share it
        groups = collections.defaultdict(set)
        for e in self.entries:
            groups[e["params"]["task"]].add(e["group"])
        self.assertTrue(all(len(g) == 1 for g in groups.values()))

    # --- loading and content ------------------------------------------------

    def _load(self, e: dict):
        return self._load_file(self.out / e["path"], e["format"], e["params"]["loader"],
                               e["params"])

    def _load_archive(self, f: pathlib.Path, fmt: str, params: dict) -> dict:
        """Unpacks a benign archive and loads every member model with its
        own loader; the member list must match what is inside."""
        import tarfile
        with tempfile.TemporaryDirectory() as d:
            root = pathlib.Path(d)
            if fmt == "zip":
                with zipfile.ZipFile(f) as zf:
                    zf.extractall(root)
            elif fmt in ("tar", "gzip"):
                with tarfile.open(f) as tf:  # regular files only, no path tricks
                    for m in tf.getmembers():
                        self.assertTrue(m.isfile(), m.name)
                        self.assertFalse(m.name.startswith("/") or ".." in m.name.split("/"))
                        (root / m.name).parent.mkdir(parents=True, exist_ok=True)
                        (root / m.name).write_bytes(tf.extractfile(m).read())
            elif fmt == "7z":
                subprocess.run(["7z", "x", "-bd", "-bso0", "-bsp0", f"-o{root}", str(f)],
                               check=True, stdin=subprocess.DEVNULL)
            else:
                self.fail(f"unexpected archive format {fmt}")
            inside = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                            if p.is_file())
            self.assertEqual(inside, params["archive_files"])
            out = {}
            for m in params["members"]:
                member = root / m["name"]
                self.assertEqual(hashlib.sha256(member.read_bytes()).hexdigest(), m["sha256"])
                self.assertEqual(common.sniff_format(member), m["format"])
                out[m["name"]] = self._load_file(member, m["format"], m["loader"], {})
            self.assertTrue(out)
            return out

    def _load_file(self, f: pathlib.Path, fmt: str, loader: str, params: dict):
        import joblib
        import numpy as np
        import pandas as pd
        import torch
        if loader == "archive":
            return self._load_archive(f, fmt, params)
        if fmt == "torchscript-zip":
            return torch.jit.load(str(f))
        if loader == "torch.load":
            return torch.load(f)
        if loader == "joblib.load":
            return joblib.load(f)
        if loader == "numpy.load":
            obj = np.load(f, allow_pickle=True)
            if hasattr(obj, "files"):
                with obj:
                    return {k: obj[k] for k in obj.files}
            return obj
        if loader == "pandas.read_pickle":
            return pd.read_pickle(f)
        if loader == "dill.load":
            import dill
            with open(f, "rb") as fh:
                return dill.load(fh)
        with open(f, "rb") as fh:
            return pickle.load(fh)

    def test_every_file_loads_with_its_real_loader(self):
        import warnings
        warnings.simplefilter("ignore")
        for e in self.entries:
            with self.subTest(path=e["path"]):
                missing = e["params"].get("missing_modules")
                if missing:
                    # References a library that is not installed: the real
                    # loader must fail on exactly that import.
                    with self.assertRaises(ModuleNotFoundError) as cm:
                        self._load(e)
                    self.assertIn(cm.exception.name.split(".")[0], missing)
                else:
                    self.assertIsNotNone(self._load(e))

    def test_transformer_state_dicts_look_like_hub_checkpoints(self):
        import torch
        seen_tied = seen_meta = 0
        dtypes = set()
        for e in self.entries:
            if e["cluster"] != "transformer" or e["params"]["loader"] == "archive":
                continue
            sd = self._load(e)
            keys = list(sd)
            self.assertTrue(all(isinstance(v, torch.Tensor) for v in sd.values()))
            fam = e["params"]["family"]
            prefix = {"bert": "bert.encoder.layer.", "roberta": "roberta.encoder.layer.",
                      "distilbert": "distilbert.transformer.layer.", "gpt2": "transformer.h.",
                      "llama": "model.layers.", "qwen2": "model.layers.",
                      "opt": "model.decoder.layers.", "t5": "encoder.block.",
                      "bart": "model.encoder.layers."}[fam]
            if e["params"]["save"] != "sharded":
                self.assertTrue(any(k.startswith(prefix) for k in keys), (fam, keys[:5]))
                self.assertTrue(hasattr(sd, "_metadata"))
                seen_meta += 1
            if "lm_head.weight" in sd:
                emb = [k for k in keys if k.endswith(("embed_tokens.weight", "wte.weight",
                                                       "shared.weight"))]
                if any(sd[k].data_ptr() == sd["lm_head.weight"].data_ptr() for k in emb):
                    seen_tied += 1
            want = {"fp32": torch.float32, "fp16": torch.float16,
                    "bf16": torch.bfloat16}[e["params"]["dtype"]]
            floats = {v.dtype for v in sd.values() if v.is_floating_point()}
            self.assertEqual(floats, {want}, e["path"])
            dtypes.add(want)
        self.assertGreater(seen_tied, 0)
        self.assertGreater(seen_meta, 0)
        self.assertEqual(len(dtypes), 3)

    def test_sharded_checkpoints_have_consistent_index(self):
        dirs = {pathlib.PurePosixPath(e["path"]).parent for e in self.entries
                if e["params"].get("save") == "sharded"}
        self.assertTrue(dirs)
        for d in dirs:
            index = json.loads((self.out / d / "pytorch_model.bin.index.json").read_text())
            shards = [e for e in self.entries if pathlib.PurePosixPath(e["path"]).parent == d]
            n = shards[0]["params"]["shards"]
            self.assertEqual(len(shards), n)
            names = {pathlib.PurePosixPath(e["path"]).name for e in shards}
            self.assertEqual(names, {f"pytorch_model-{i:05d}-of-{n:05d}.bin"
                                     for i in range(1, n + 1)})
            mapped = collections.defaultdict(set)
            for k, fname in index["weight_map"].items():
                mapped[fname].add(k)
            for e in shards:
                name = pathlib.PurePosixPath(e["path"]).name
                self.assertEqual(set(self._load(e)), mapped[name])

    def test_checkpoints_carry_optimizer_and_rng_state(self):
        import numpy as np
        import torch
        rng_files = [e for e in self.entries
                     if e["params"].get("file_role") == "rng_state.pth"]
        self.assertTrue(rng_files)
        for e in rng_files:
            st = self._load(e)
            self.assertIsInstance(st["cpu"], torch.ByteTensor)
            self.assertEqual(st["numpy"][0], "MT19937")
            self.assertIsInstance(st["numpy"][1], np.ndarray)
            self.assertEqual(len(st["python"][1]), 625)
        opt = [e for e in self.entries if e["params"].get("file_role") == "optimizer.pt"]
        self.assertTrue(opt)
        for e in opt:
            st = self._load(e)
            self.assertIn("exp_avg", next(iter(st["state"].values())))
        styles = {e["params"].get("style") for e in self.entries if e["cluster"] == "checkpoint"}
        self.assertLessEqual({"hf-trainer", "plain", "lightning", "timm"}, styles)

    def test_training_args_reference_uninstalled_transformers(self):
        import importlib.util
        self.assertIsNone(importlib.util.find_spec("transformers"))
        args = [e for e in self.entries if "training_args" in e["params"]]
        self.assertTrue(args)
        for e in args:
            f = self.out / e["path"]
            data = torch_zip_pickle(f) if e["format"] == "torch-zip" else f.read_bytes()
            globs = pickle_globals(data)
            self.assertTrue(any(g.startswith("transformers.training_args.") or
                                g.startswith("trl.") for g in globs), globs)
            self.assertIn("transformers.trainer_utils.IntervalStrategy", globs)
        # and nothing was left registered by the generator in this process
        self.assertNotIn("transformers", sys.modules)

    def test_classic_models_are_fitted(self):
        from sklearn.base import BaseEstimator
        from sklearn.utils.validation import check_is_fitted
        kinds = set()
        for e in self.entries:
            if e["cluster"] != "classic-ml" or e["params"]["loader"] == "archive":
                continue
            obj = self._load(e)
            if isinstance(obj, dict):
                obj = obj["model"]
            kinds.add(e["params"]["estimator"])
            if isinstance(obj, BaseEstimator):
                check_is_fitted(obj)
            else:  # xgboost Booster
                self.assertGreater(obj.num_boosted_rounds(), 0)
        self.assertGreaterEqual(len(kinds), 15)
        sers = {json.dumps(s, sort_keys=True) for e in self.entries
                if e["cluster"] == "classic-ml" and "serialization" in e["params"]
                for s in [e["params"]["serialization"]]}
        protocols = {json.loads(s).get("protocol") for s in sers}
        self.assertLessEqual({2, 4, 5}, protocols)

    def test_code_bearing_objects_are_marked_and_callable(self):
        code = [e for e in self.entries if e["params"].get("code_bearing")]
        self.assertTrue(code)
        self.assertEqual({e["library"] for e in code}, {"dill", "cloudpickle"})
        for e in code:
            obj = self._load(e)
            fns = list(obj.values()) if isinstance(obj, dict) else [obj]
            self.assertTrue(any(callable(f) for f in fns), e["path"])
        data = [e for e in self.entries if e["cluster"] == "python-objects"
                and not e["params"]["code_bearing"]]
        self.assertTrue(data)

    def test_object_arrays_need_allow_pickle(self):
        import numpy as np
        obj = [e for e in self.entries if e["params"].get("object_arrays")]
        self.assertTrue(obj)
        for e in obj:
            with self.assertRaises(ValueError):
                r = np.load(self.out / e["path"], allow_pickle=False)
                if hasattr(r, "files"):
                    [r[k] for k in r.files]


class PlanCounts(unittest.TestCase):
    """Full-mode counts without generating anything."""

    def test_full_plan_has_600_files_in_6_clusters(self):
        for seed in (0, 1, 12345):
            tasks = benign.plan(False, seed)
            files = collections.Counter()
            for t in tasks:
                files[t["cluster"]] += t["n_files"]
            self.assertGreaterEqual(sum(files.values()), 600, seed)
            self.assertGreaterEqual(len(files), 6)
            self.assertEqual(set(files), set(benign.CLUSTERS))
            for cluster, n in files.items():
                self.assertGreaterEqual(n, 40, cluster)

    def test_plan_is_deterministic_and_seed_dependent(self):
        self.assertEqual(benign.plan(False, 7), benign.plan(False, 7))
        self.assertNotEqual(benign.plan(False, 7), benign.plan(False, 8))

    def test_full_plan_split_proportions(self):
        groups = {f"benign/{t['key']}" for t in benign.plan(False, 0)}
        c = collections.Counter(common.assign_split(g, "benign") for g in groups)
        n = sum(c.values())
        self.assertAlmostEqual(c["train"] / n, 0.6, delta=0.08)
        self.assertAlmostEqual(c["val"] / n, 0.2, delta=0.06)
        self.assertAlmostEqual(c["test"] / n, 0.2, delta=0.06)
        # every cluster can be trained, tuned and evaluated
        per = collections.defaultdict(set)
        for t in benign.plan(False, 0):
            per[t["cluster"]].add(common.assign_split(f"benign/{t['key']}", "benign"))
        self.assertTrue(all(s == {"train", "val", "test"} for s in per.values()), per)

    def test_small_plan_covers_every_cluster_and_generator(self):
        small = benign.plan(True, 0)
        self.assertEqual({t["cluster"] for t in small}, set(benign.CLUSTERS))
        self.assertEqual({t["gen"] for t in small}, set(benign.GENERATORS))

    def test_transformer_family_lists_agree(self):
        import benign_torch
        self.assertEqual(benign.TRANSFORMER_FAMILIES, list(benign_torch.TRANSFORMER_FAMILIES))

    def test_estimator_types(self):
        import benign_classic
        sk = [k for k, (_, lib) in benign_classic.ESTIMATORS.items() if lib == "sklearn"]
        self.assertGreaterEqual(len(sk), 15)

    def test_classic_serializations_have_distinct_files(self):
        for small in (True, False):
            for t in benign.plan(small, 0):
                if t["gen"] == "classic":
                    sfx = [s["suffix"] for s in t["params"]["serializations"]]
                    self.assertEqual(len(sfx), len(set(sfx)), t["key"])

    def test_batches_partition_the_plan(self):
        tasks = benign.plan(False, 0)
        batches = benign.make_batches(tasks)
        self.assertEqual([t for b in batches for t in b], tasks)
        self.assertTrue(all(len({t["gen"] for t in b}) == 1 for b in batches))


class FullBenignCorpus(unittest.TestCase):
    """Generates the full benign corpus once: the plan's counts are real and
    the whole run stays inside the 5-minute budget."""

    FULL_LIMIT_S = 300.0

    def test_full_generation(self):
        with tempfile.TemporaryDirectory(prefix="dynahug-corpus-full-") as d:
            out = pathlib.Path(d)
            proc, secs = run_generate(out, "--only", "benign")
            print(f"\n[corpus] full --only benign: {secs:.1f}s", file=sys.stderr)
            self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
            self.assertLess(secs, self.FULL_LIMIT_S)
            m = json.loads((out / "manifest.json").read_text())
            self.assertIs(m["small"], False)
            files = m["files"]
            planned = benign.plan(False, 0)
            self.assertEqual(len(files), sum(t["n_files"] for t in planned))
            self.assertGreaterEqual(len(files), 600)
            self.assertEqual({e["cluster"] for e in files}, set(benign.CLUSTERS))
            self.assertEqual(common.check_groups(files), [])
            for e in files:
                self.assertEqual(common.validate_entry(e), [], e["path"])
                self.assertEqual((out / e["path"]).stat().st_size, e["size"])


class CommonHelpers(unittest.TestCase):
    """Split rule and error paths of common.py."""

    def test_malicious_never_train_and_about_half_val(self):
        c = collections.Counter(common.assign_split(f"mal/{i}", "malicious")
                                for i in range(2000))
        self.assertNotIn("train", c)
        self.assertAlmostEqual(c["val"] / 2000, 0.5, delta=0.05)

    def test_split_is_a_function_of_the_group_only(self):
        for i in range(50):
            g = f"benign/x/{i}"
            self.assertEqual(common.assign_split(g, "benign"), common.assign_split(g, "benign"))

    def test_assign_split_rejects_unknown_label(self):
        with self.assertRaises(ValueError):
            common.assign_split("g", "weird")

    def test_sniff_format_table(self):
        import bz2
        import gzip
        import lzma
        import zlib
        payload = pickle.dumps({"a": 1}, protocol=4)
        cases = {
            "raw-pickle": payload,
            "raw-pickle-p0": pickle.dumps([1], protocol=0),
            "gzip": gzip.compress(payload, mtime=0),
            "bzip2": bz2.compress(payload),
            "xz": lzma.compress(payload),
            "lzma": lzma.compress(payload, format=lzma.FORMAT_ALONE),
            "zlib": zlib.compress(payload),
            "npy": b"\x93NUMPY\x01\x00" + b"\x00" * 20,
            "7z": b"7z\xbc\xaf\x27\x1c" + b"\x00" * 20,
        }
        with tempfile.TemporaryDirectory() as d:
            for name, data in cases.items():
                p = pathlib.Path(d) / name
                p.write_bytes(data)
                self.assertEqual(common.sniff_format(p), name.split("-p0")[0], name)
            bad = pathlib.Path(d) / "garbage"
            bad.write_bytes(b"\x00\x01\x02garbage")
            with self.assertRaises(ValueError):
                common.sniff_format(bad)
            z = pathlib.Path(d) / "plain.zip"
            with zipfile.ZipFile(z, "w") as zf:
                zf.writestr("readme.txt", "hi")
            self.assertEqual(common.sniff_format(z), "zip")
            with zipfile.ZipFile(z, "w") as zf:
                zf.writestr("archive/data.pkl", payload)
            self.assertEqual(common.sniff_format(z), "torch-zip")

    def test_make_entry_rejects_format_mismatch(self):
        with tempfile.TemporaryDirectory() as d:
            p = pathlib.Path(d) / "x.pkl"
            p.write_bytes(pickle.dumps(1, protocol=2))
            with self.assertRaises(ValueError):
                common.make_entry(pathlib.Path(d), p, label="benign", cluster="c",
                                  library="pickle", group="g", params={}, fmt="npy")
            e = common.make_entry(pathlib.Path(d), p, label="benign", cluster="c",
                                  library="pickle", group="g", params={})
            self.assertEqual(e["format"], "raw-pickle")
            self.assertEqual(e["path"], "x.pkl")
            self.assertEqual(common.validate_entry(e), [])

    def test_validate_entry_flags_each_problem(self):
        good = {"path": "p", "sha256": "0" * 64, "size": 1, "label": "malicious",
                "cluster": "none", "technique": "os-system", "library": "pickle",
                "format": "raw-pickle", "group": "g", "params": {}, "effects": ["exec"],
                "loads": True, "description": "d"}
        good["split"] = common.assign_split("g", "malicious")
        self.assertEqual(common.validate_entry(good), [])
        bad_cases = {
            "missing": {k: v for k, v in good.items() if k != "sha256"},
            "label": dict(good, label="evil"),
            "format": dict(good, format="rar"),
            "library": dict(good, library="tensorflow"),
            "train": dict(good, split="train"),
            "effect": dict(good, effects=["explode"]),
            "no-desc": {k: v for k, v in good.items() if k != "description"},
            "benign-technique": dict(good, label="benign",
                                     split=common.assign_split("g", "benign")),
            "wrong-split": dict(good, split="test" if good["split"] == "val" else "val"),
        }
        for name, entry in bad_cases.items():
            self.assertNotEqual(common.validate_entry(entry), [], name)

    def test_check_groups_detects_leak(self):
        self.assertEqual(common.check_groups([{"group": "a", "split": "train"},
                                              {"group": "a", "split": "train"}]), [])
        self.assertNotEqual(common.check_groups([{"group": "a", "split": "train"},
                                                 {"group": "a", "split": "test"}]), [])


class DriverWithoutMaliciousSide(unittest.TestCase):
    """generate.py must fail clearly, not half-generate, when malicious.py is
    absent and the malicious side is requested."""

    def test_missing_malicious_module_is_a_clear_error(self):
        with tempfile.TemporaryDirectory() as d:
            tools = pathlib.Path(d) / "corpus"
            tools.mkdir()
            for src in CORPUS.glob("*.py"):
                if src.name != "malicious.py" and not src.name.startswith("malicious_"):
                    shutil.copy(src, tools / src.name)
            for args in ([], ["--only", "malicious"]):
                proc = subprocess.run([PYTHON, str(tools / "generate.py"), "--out",
                                       str(pathlib.Path(d) / "out"), "--small", *args],
                                      capture_output=True, text=True, timeout=120)
                self.assertNotEqual(proc.returncode, 0)
                self.assertIn("malicious.py is not present", proc.stderr)
                self.assertFalse((pathlib.Path(d) / "out" / "manifest.json").exists())


if __name__ == "__main__":
    unittest.main()
