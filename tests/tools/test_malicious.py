"""Static tests of the malicious corpus generator (tools/corpus/malicious.py).

SAFETY: nothing generated is ever unpickled or loaded.  The whole module
runs with tripwires on every loader (pickle, torch, numpy, joblib, dill,
cloudpickle) and checks that no probe marker appeared under
/tmp/dynahug_pwned/.  Pickles are inspected with pickletools.genops only.

Run: /usr/bin/python3 -m unittest discover -s tests/tools -p 'test_malicious*.py'
"""

from __future__ import annotations

import collections
import json
import os
import pathlib
import pickle
import pickletools
import sys
import tempfile
import unittest
import zipfile
import io

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "corpus"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

# Import every library the generator touches *before* arming tripwires, so
# their own import machinery is unaffected.
import numpy  # noqa: E402
import torch  # noqa: E402
import joblib  # noqa: E402
import dill  # noqa: E402
import cloudpickle  # noqa: E402
import sklearn.linear_model  # noqa: E402,F401  (pre-import before tripwires)

import common  # noqa: E402
import malicious  # noqa: E402
import test_malicious_helpers as ms  # noqa: E402

MIN_TECHNIQUES = 45
TRIPS: list[str] = []


def _tripwire(name):
    def trip(*args, **kwargs):
        TRIPS.append(name)
        raise AssertionError(f"SAFETY: {name} called during the malicious "
                             f"corpus tests")
    return trip


_TRIPWIRES = [
    (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
    (pickle, "_load"), (pickle, "_loads"), (pickle, "_Unpickler"),
    (torch, "load"), (torch.jit, "load"), (numpy, "load"),
    (joblib, "load"), (dill, "load"), (dill, "loads"),
    (cloudpickle, "load"), (cloudpickle, "loads"),
]
_saved: list = []


def _pwned_listing() -> set:
    d = pathlib.Path(ms.PWN_DIR)
    return {str(p) for p in d.rglob("*")} if d.exists() else set()


_STREAMS: dict = {}


def cached_stream(e, out):
    key = (str(out), e["path"])
    if key not in _STREAMS:
        _STREAMS[key] = ms.payload_stream(e, out)
    return _STREAMS[key]


def setUpModule():
    global TMP, SMALL_A, SMALL_B, FULL, ENTRIES_A, ENTRIES_B, ENTRIES_FULL
    global PWNED_BEFORE
    PWNED_BEFORE = _pwned_listing()
    for mod, attr in _TRIPWIRES:
        _saved.append((mod, attr, getattr(mod, attr)))
        setattr(mod, attr, _tripwire(f"{mod.__name__}.{attr}"))
    TMP = tempfile.TemporaryDirectory(prefix="dynahug-mal-test-")
    base = pathlib.Path(TMP.name)
    SMALL_A, SMALL_B, FULL = base / "a", base / "b", base / "full"
    ENTRIES_A = malicious.generate(SMALL_A, small=True, seed=0)
    ENTRIES_B = malicious.generate(SMALL_B, small=True, seed=0)
    ENTRIES_FULL = malicious.generate(FULL, small=False, seed=0)


def tearDownModule():
    for mod, attr, orig in _saved:
        setattr(mod, attr, orig)
    TMP.cleanup()


class TechniqueCoverage(unittest.TestCase):

    def test_registry_has_enough_distinct_techniques(self):
        self.assertGreaterEqual(len(malicious.TECHNIQUES), MIN_TECHNIQUES)

    def test_small_corpus_covers_every_technique(self):
        got = {e["technique"] for e in ENTRIES_A}
        self.assertGreaterEqual(len(got), MIN_TECHNIQUES)
        self.assertEqual(got, set(malicious.TECHNIQUES))

    def test_small_corpus_every_technique_in_three_containers(self):
        by_tech = collections.defaultdict(set)
        for e in ENTRIES_A:
            by_tech[e["technique"]].add(e["params"]["container"])
        for tid, kinds in by_tech.items():
            self.assertGreaterEqual(len(kinds), 3, tid)

    def test_readme_lists_every_technique(self):
        readme = (ROOT / "tools" / "corpus" / "README.md").read_text()
        self.assertIn("## Malicious techniques", readme)
        section = readme.split("## Malicious techniques", 1)[1]
        for tid in malicious.TECHNIQUES:
            self.assertIn(f"`{tid}`", section)

    def test_small_corpus_covers_every_container(self):
        full = {e["params"]["container"] for e in ENTRIES_FULL}
        small = {e["params"]["container"] for e in ENTRIES_A}
        self.assertEqual(small, full)
        self.assertEqual({e["format"] for e in ENTRIES_A},
                         {e["format"] for e in ENTRIES_FULL})

    def test_full_corpus_every_technique_in_several_containers(self):
        by_tech = collections.defaultdict(set)
        for e in ENTRIES_FULL:
            by_tech[e["technique"]].add(e["format"])
        self.assertEqual(set(by_tech), set(malicious.TECHNIQUES))
        for tid, formats in sorted(by_tech.items()):
            with self.subTest(technique=tid):
                self.assertGreaterEqual(len(formats), 3, formats)
                self.assertIn("raw-pickle", formats)
                self.assertIn("torch-zip", formats)
                if not malicious.TECHNIQUES[tid].hosted_only:
                    self.assertIn("torch-legacy", formats)
                self.assertIn("joblib", formats)
                self.assertIn("7z", formats)

    def test_full_corpus_raw_pickles_use_misleading_extensions(self):
        for tid in malicious.TECHNIQUES:
            exts = {pathlib.Path(e["path"]).suffix for e in ENTRIES_FULL
                    if e["technique"] == tid and e["params"]["container"] == "raw"}
            with self.subTest(technique=tid):
                self.assertEqual(exts, set(malicious.RAW_EXTS))

    def test_plan_matches_generated_files(self):
        self.assertEqual(len(malicious.plan(True)), len(ENTRIES_A))
        self.assertEqual(len(malicious.plan(False)), len(ENTRIES_FULL))

    def test_zip_variants_present_in_full_corpus(self):
        variants = {e["params"]["variant"] for e in ENTRIES_FULL
                    if e["params"]["container"] == "torch-zip-variant"}
        self.assertEqual(variants, set(malicious.ZIP_VARIANTS))


class ManifestEntries(unittest.TestCase):

    def test_entries_are_valid(self):
        for entries, out in ((ENTRIES_A, SMALL_A), (ENTRIES_FULL, FULL)):
            paths = [e["path"] for e in entries]
            self.assertEqual(len(paths), len(set(paths)))
            for e in entries:
                self.assertEqual(common.validate_entry(e), [], e["path"])
                self.assertEqual(e["label"], "malicious")
                self.assertIn(e["split"], ("val", "test"))
                self.assertTrue(e["path"].startswith(
                    f"malicious/{e['technique']}/"), e["path"])
                self.assertEqual(e["group"], f"malicious/{e['technique']}")
                self.assertIsInstance(e["loads"], bool)
                self.assertTrue(e["effects"])
                self.assertTrue(e["description"])
                f = out / e["path"]
                self.assertEqual(f.stat().st_size, e["size"])
                self.assertEqual(common.sha256_file(f), e["sha256"])
                self.assertEqual(common.sniff_format(f), e["format"])
            self.assertEqual(common.check_groups(entries), [])
            json.dumps(entries)  # serialisable as the manifest

    def test_both_malicious_splits_used(self):
        splits = collections.Counter(e["split"] for e in ENTRIES_FULL)
        self.assertGreater(splits["val"], len(ENTRIES_FULL) // 5)
        self.assertGreater(splits["test"], len(ENTRIES_FULL) // 5)

    def test_broken_streams_do_not_load(self):
        for e in ENTRIES_FULL:
            if e["technique"].startswith("broken-"):
                self.assertFalse(e["loads"], e["path"])

    def test_params_regenerate_the_same_bytes(self):
        for e in ENTRIES_A[::7]:
            p = e["params"]
            job = malicious.Job(p["technique"], p["container"], p["variant"],
                                p["index"])
            _, data, _ = malicious.build(job, p["seed"])
            self.assertEqual(common.sha256_bytes(data), e["sha256"], e["path"])


class Determinism(unittest.TestCase):

    def test_two_small_runs_are_identical(self):
        self.assertEqual(ENTRIES_A, ENTRIES_B)
        for e in ENTRIES_A:
            self.assertEqual((SMALL_A / e["path"]).read_bytes(),
                             (SMALL_B / e["path"]).read_bytes(), e["path"])

    def test_parallel_generation_is_identical(self):
        with tempfile.TemporaryDirectory() as d:
            got = malicious.generate(pathlib.Path(d), small=True, seed=0,
                                     jobs=2)
        self.assertEqual(got, ENTRIES_A)

    def test_other_process_and_hash_seed_give_identical_bytes(self):
        # Catches run-dependent bytes (pointer-named legacy storages, hash
        # ordering) that two runs in one process would share.
        import subprocess
        code = ("import sys, pathlib, tempfile, json; "
                f"sys.path.insert(0, {str(ROOT / 'tools' / 'corpus')!r}); "
                "import malicious\n"
                "with tempfile.TemporaryDirectory() as d:\n"
                "    e = malicious.generate(pathlib.Path(d), True, 0)\n"
                "print(json.dumps(sorted((x['path'], x['sha256']) for x in e)))")
        env = dict(os.environ, PYTHONHASHSEED="12345")
        out = subprocess.run([sys.executable, "-c", code], env=env,
                             capture_output=True, text=True, check=True)
        got = [tuple(x) for x in json.loads(out.stdout)]
        self.assertEqual(got, sorted((e["path"], e["sha256"])
                                     for e in ENTRIES_A))

    def test_files_on_disk_are_exactly_the_manifest(self):
        on_disk = {str(p.relative_to(SMALL_A)) for p in SMALL_A.rglob("*")
                   if p.is_file()}
        self.assertEqual(on_disk, {e["path"] for e in ENTRIES_A})


class StreamsParse(unittest.TestCase):
    """Every pickle parses with genops up to where it is meant to; broken
    ones fail exactly at their break offset."""

    def _check(self, entries, out):
        for e in entries:
            stream, kind = cached_stream(e, out)
            p = e["params"]
            s, end = p["payload_span"]
            with self.subTest(path=e["path"]):
                self.assertLess(s, end)
                self.assertLessEqual(end, len(stream))
                if e["technique"].startswith("broken-"):
                    brk = p["break_offset"]
                    self.assertTrue(s < brk < end)
                    # The stream is valid up to the break ...
                    seg = stream[s:brk] if s else stream[:brk]
                    if s:
                        seg = b"\x80\x02" + seg
                    ops, stop = ms.genops_all(seg + b".")
                    self.assertEqual(stop, len(seg) + 1)
                    # ... and fails there, after the payload's REDUCE.
                    yielded = []
                    with self.assertRaises(ValueError):
                        for op, arg, pos in pickletools.genops(
                                io.BytesIO(stream[s:] if s else stream)):
                            yielded.append((op.name, pos))
                    self.assertIn("REDUCE", [n for n, _ in yielded])
                    self.assertLess(max(pos for _, pos in yielded), brk - s)
                    continue
                self.assertEqual(ms.check_full_parse(stream, kind), [])
                seg = stream[s:end]
                if p.get("injection") == "prefix":
                    self.assertEqual(seg[-1:], b"0")  # result discarded
                ops, stop = ms.genops_all(seg + b".")
                self.assertGreaterEqual(stop, len(seg))
                self.assertTrue(any(op.name in ("REDUCE", "BUILD", "INST", "OBJ")
                                    for op, _, _ in ops))

    def test_small(self):
        self._check(ENTRIES_A, SMALL_A)

    def test_full(self):
        self._check(ENTRIES_FULL, FULL)


class ProbeTargets(unittest.TestCase):
    """Every string a payload carries (decoded the way the payload decodes
    it) names only /tmp/dynahug_pwned/, 127.0.0.1:9 or /bin/true."""

    def _scan(self, e, out):
        stream, kind = cached_stream(e, out)
        s, end = e["params"]["payload_span"]
        sc = ms.ProbeScanner(e["technique"])
        seg = stream[s:end]
        if e["params"].get("injection") == "prefix":
            seg = seg + b"."
        elif s:
            seg = seg  # suffix: already ends in STOP
        sc.scan_pickle(seg, e["path"])
        return sc

    def test_only_harmless_probes(self):
        for entries, out in ((ENTRIES_A, SMALL_A), (ENTRIES_FULL, FULL)):
            for e in entries:
                sc = self._scan(e, out)
                with self.subTest(path=e["path"]):
                    self.assertEqual(sc.problems, [])
                    self.assertGreater(len(sc.texts), 0)

    def test_declared_effects_are_visible_in_the_payload(self):
        for e in ENTRIES_FULL:
            sc = self._scan(e, FULL)
            blob = "\n".join(sc.texts)
            with self.subTest(path=e["path"]):
                if "exec" in e["effects"]:
                    self.assertIn(ms.CMD, blob)
                if "file-write" in e["effects"]:
                    self.assertIn(ms.PWN_DIR + "/", blob)
                if "connect" in e["effects"]:
                    self.assertIn(ms.HOST, blob)

    def test_scanner_rejects_other_targets(self):
        # The checker itself must be able to fail.
        bad = [
            "/etc/passwd", "http://10.0.0.1/x", "import os\nos.system('rm x')",
            "curl http://127.0.0.1:9/", "('127.0.0.1', 22)", "/tmp/other",
            "os.system('/bin/sh')", "192.168.1.1",
        ]
        for text in bad:
            self.assertNotEqual(ms.text_problems(text, "t"), [], text)
        good = [ms.CMD, ms.URL, ms.PWN_DIR + "/x.py", "os system",
                "open(%r, 'w')" % (ms.PWN_DIR + "/a",), ms.HOST]
        for text in good:
            self.assertEqual(ms.text_problems(text, "t"), [], text)

    def test_scanner_finds_bad_port_and_nested_paths(self):
        import pickle_builder as pb
        cases = [
            pb.payload_pickle(pb.call("socket", "create_connection",
                                      (ms.HOST, 22)), 4),
            pb.payload_pickle(pb.call("pickle", "loads", pb.payload_pickle(
                pb.call("os", "system", "/bin/sh"), 4)), 2),
            pb.payload_pickle(pb.call("builtins", "exec", pb.call(
                "zlib", "decompress", __import__("zlib").compress(
                    b"open('/etc/shadow')"))), 3),
        ]
        for data in cases:
            sc = ms.ProbeScanner("exec-zlib")
            sc.scan_pickle(data, "case")
            self.assertNotEqual(sc.problems, [])


class HostsIntact(unittest.TestCase):
    """The clean host around an injected payload is byte-identical."""

    def _host_stream(self, e):
        p = e["params"]
        c = p["container"]
        if c in ("torch-zip", "torch-zip-variant", "7z-torch"):
            return malicious.read_member(
                malicious.torch_host(p["host"]).zip_bytes, "archive/data.pkl")
        if c in ("torch-legacy", "torch-legacy-magic"):
            return malicious.torch_host(p["host"]).legacy_bytes
        if c == "joblib":
            return malicious.joblib_host()[0]
        if c in ("npy", "npz"):
            h, pk = malicious.npy_host()
            return h + pk
        if p.get("host") == "sklearn-logreg":
            return malicious.pickle_host()[0]
        if p.get("host") == "numpy-dict":
            return malicious.numpy_dict_pickle()[0]
        return None

    def _check(self, entries, out):
        n = 0
        for e in entries:
            p = e["params"]
            host = self._host_stream(e)
            if host is None:
                self.assertNotIn("injection", p, e["path"])
                continue
            n += 1
            stream, _ = cached_stream(e, out)
            s, end = p["payload_span"]
            with self.subTest(path=e["path"]):
                if p["injection"] == "prefix":
                    self.assertEqual(stream[:s] + stream[end:], host)
                else:  # suffix: host STOP became EMPTY_TUPLE, payload follows
                    self.assertEqual(stream[:s], host[:s])
                    self.assertEqual(host[s:s + 1], b".")
                    self.assertEqual(stream[s:s + 1], b")")
                    self.assertEqual(stream[end:], host[s + 1:])
        return n

    def test_payload_removed_gives_host(self):
        self.assertGreater(self._check(ENTRIES_A, SMALL_A), 100)
        self.assertGreater(self._check(ENTRIES_FULL, FULL), 1000)

    def test_torch_zip_other_members_byte_identical(self):
        checked = 0
        for e in ENTRIES_FULL:
            p = e["params"]
            if p["container"] not in ("torch-zip", "torch-zip-variant",
                                      "7z-torch"):
                continue
            path = FULL / e["path"]
            data = (ms.seven_zip_extract(path, p["inner_name"])
                    if p["container"] == "7z-torch" else path.read_bytes())
            got = ms.zip_members(data)
            want = ms.zip_members(malicious.torch_host(p["host"]).zip_bytes)
            top = p["pickle_member"].split("/")[0]
            with self.subTest(path=e["path"]):
                self.assertEqual([n.split("/", 1)[1] for n, _ in got],
                                 [n.split("/", 1)[1] for n, _ in want])
                self.assertTrue(all(n.split("/")[0] == top for n, _ in got))
                for (gn, gd), (wn, wd) in zip(got, want):
                    if gn.endswith("/data.pkl"):
                        self.assertNotEqual(gd, wd)
                    else:
                        self.assertEqual(gd, wd, gn)
                        checked += 1
                # torch's 64-byte data alignment is kept
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    for info in zf.infolist():
                        off = info.header_offset
                        start = off + 30 + len(info.filename) + len(info.extra)
                        self.assertEqual(start % 64, 0, info.filename)
        self.assertGreater(checked, 500)

    def test_zip_variants(self):
        for e in ENTRIES_FULL:
            p = e["params"]
            if p["container"] not in ("torch-zip", "torch-zip-variant"):
                continue
            data = (FULL / e["path"]).read_bytes()
            member = p["pickle_member"]
            with self.subTest(path=e["path"]):
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    bad = zf.testzip()  # CRC of every member (raw bytes)
                    info = zf.getinfo(member)
                    local_flags = int.from_bytes(
                        data[info.header_offset + 6:info.header_offset + 8],
                        "little")
                v = p["variant"]
                self.assertEqual(bad, member if v == "bad-crc" else None)
                if v == "renamed-folder":
                    self.assertNotEqual(member.split("/")[0], "archive")
                else:
                    self.assertEqual(member, "archive/data.pkl")
                if v == "flags-utf8":
                    self.assertEqual(info.flag_bits & 0x0806, 0x0806)
                    self.assertEqual(local_flags & 0x0806, 0x0806)
                elif v == "flags-local-enc":
                    self.assertEqual(info.flag_bits & 1, 0)
                    self.assertEqual(local_flags & 1, 1)
                else:
                    self.assertEqual(info.flag_bits, 0)


class Safety(unittest.TestCase):

    def test_tripwires_are_armed(self):
        with self.assertRaises(AssertionError):
            pickle.loads(b"N.")
        TRIPS.remove("pickle.loads")

    def test_nothing_was_loaded(self):
        self.assertEqual(TRIPS, [])

    def test_no_probe_marker_appeared(self):
        self.assertEqual(_pwned_listing(), PWNED_BEFORE)

    def test_generator_source_never_calls_a_loader(self):
        import ast
        banned = {"load", "loads", "_load", "_loads", "Unpickler",
                  "_Unpickler", "load_module", "run_path", "run_module"}
        for name in ("malicious.py", "pickle_builder.py",
                     "../../tests/tools/test_malicious_helpers.py"):
            tree = ast.parse((ROOT / "tools" / "corpus" / name).read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    f = node.func
                    called = f.attr if isinstance(f, ast.Attribute) else \
                        getattr(f, "id", None)
                    self.assertNotIn(called, banned,
                                     f"{name}:{node.lineno} calls {called}")


if __name__ == "__main__":
    unittest.main()
