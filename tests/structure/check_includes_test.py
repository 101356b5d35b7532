"""Unit tests of check_includes.py on small trees built in a temp dir."""
import os
import tempfile
import unittest

import check_includes


def tree(files):
    """Writes {path: text} under a fresh temp dir; returns its path."""
    root = tempfile.mkdtemp(prefix="dynahug_includes_")
    for path, text in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
    return root


def inc(*paths):
    return "".join(f'#include "{p}"\n' for p in paths)


class CheckIncludesTest(unittest.TestCase):
    def test_downward_includes_are_allowed(self):
        root = tree({
            "hooks/base/py_ref.h": "#include <Python.h>\n",
            "hooks/audit_hook.h": inc("hooks/base/py_ref.h", "proto/dynahug.pb.h"),
            "hooks/audit_hook.cc": inc("hooks/audit_hook.h", "absl/strings/str_cat.h"),
            "sandbox/child_launcher.h": inc("hooks/base/py_ref.h"),
            "runtime/container/container.h": inc("hooks/pickle_decoder.h"),
            "runtime/embed/loader.h": inc("hooks/audit_hook.h"),
            "runtime/trace/trace_runner.h": inc(
                "runtime/embed/loader.h", "runtime/container/container.h",
                "sandbox/child_launcher.h"),
            "runtime/cli/cli.cc": inc("runtime/trace/trace_runner.h",
                                      "features/feature_extractor.h"),
            "features/feature_extractor.h": inc("proto/dynahug.pb.h"),
        })
        self.assertEqual(check_includes.check(root), [])

    def test_every_upward_edge_is_reported(self):
        cases = [
            ("hooks/audit_hook.cc", "runtime/embed/loader.h"),
            ("hooks/audit_hook.cc", "sandbox/child_launcher.h"),
            ("hooks/base/sha256.cc", "hooks/audit_hook.h"),
            ("hooks/base/sha256.cc", "proto/dynahug.pb.h"),
            ("sandbox/child_launcher.cc", "hooks/audit_hook.h"),
            ("sandbox/child_launcher.cc", "runtime/trace/trace_runner.h"),
            ("features/feature_extractor.cc", "runtime/container/container.h"),
            ("features/feature_extractor.cc", "hooks/pickle_decoder.h"),
            ("features/feature_extractor.cc", "sandbox/unique_fd.h"),
            ("runtime/container/container.cc", "runtime/embed/loader.h"),
            ("runtime/container/container.cc", "runtime/trace/trace_runner.h"),
            ("runtime/container/container.cc", "runtime/cli/cli.h"),
            ("runtime/container/container.cc", "sandbox/child_launcher.h"),
            ("runtime/embed/loader.cc", "runtime/trace/trace_runner.h"),
            ("runtime/embed/loader.cc", "features/detector.h"),
            ("runtime/trace/trace_runner.cc", "runtime/cli/cli.h"),
            ("runtime/trace/trace_runner.cc", "features/detector.h"),
        ]
        for src, dst in cases:
            with self.subTest(src=src, dst=dst):
                problems = check_includes.check(tree({src: inc(dst)}))
                self.assertEqual(len(problems), 1, problems)
                self.assertIn(f"{src} -> {dst}", problems[0])

    def test_units_that_include_each_other_are_a_cycle(self):
        # audit_hook.h -> native_inspector.h and native_inspector.cc ->
        # audit_hook.h: no file includes itself, but the units do.
        root = tree({
            "hooks/audit_hook.h": inc("hooks/native_inspector.h"),
            "hooks/native_inspector.h": "",
            "hooks/native_inspector.cc": inc("hooks/native_inspector.h",
                                             "hooks/audit_hook.h"),
        })
        self.assertEqual(check_includes.check(root), [
            "include cycle: hooks/audit_hook -> hooks/native_inspector -> "
            "hooks/audit_hook"])

    def test_longer_cycles_are_reported_once(self):
        root = tree({
            "runtime/cli/a.cc": inc("runtime/cli/b.h"),
            "runtime/cli/b.cc": inc("runtime/cli/c.h"),
            "runtime/cli/c.cc": inc("runtime/cli/a.h"),
            "runtime/cli/d.cc": inc("runtime/cli/a.h"),
        })
        problems = check_includes.check(root)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("runtime/cli/a -> runtime/cli/b -> runtime/cli/c", problems[0])

    def test_a_file_outside_every_room_is_reported(self):
        problems = check_includes.check(tree({"runtime/loose.cc": ""}))
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("runtime/loose.cc: not inside any room", problems[0])

    def test_main_exit_code(self):
        self.assertEqual(check_includes.main(["x", tree({})]), 0)
        self.assertEqual(check_includes.main(
            ["x", tree({"hooks/a.cc": inc("runtime/embed/loader.h")})]), 1)


if __name__ == "__main__":
    unittest.main()
