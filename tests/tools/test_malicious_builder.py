"""Unit tests of tools/corpus/pickle_builder.py (static: genops only).

Run: /usr/bin/python3 -m unittest discover -s tests/tools -p 'test_malicious*.py'
"""

from __future__ import annotations

import io
import pathlib
import pickle
import pickletools
import sys
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "corpus"))

import pickle_builder as pb  # noqa: E402
from pickle_builder import G, Call, Put, Ref, Seq, Str, StackGlobal  # noqa: E402


def ops(data: bytes):
    return [(op.name, arg, pos) for op, arg, pos in
            pickletools.genops(io.BytesIO(data))]


class EmitterEncodings(unittest.TestCase):

    def test_every_protocol_parses_to_stop(self):
        expr = Seq((Put("f", G("builtins", "len")),
                    Call(Ref("f"), (["a", 1, -70000, 2**70, 1.5, None, True,
                                     False, b"\x00\xff", {"k": (1, 2, 3, 4)}],)
                         )))
        for proto in range(6):
            with self.subTest(proto=proto):
                data = pb.payload_pickle(expr, proto)
                got = ops(data)
                self.assertEqual(got[-1][0], "STOP")
                self.assertEqual(got[-1][2], len(data) - 1)
                self.assertEqual(proto >= 2, got[0][0] == "PROTO")
                ints = [a for n, a, _ in got if n in
                        ("INT", "BININT", "BININT1", "BININT2", "LONG1")]
                for v in (1, -70000, 2**70):
                    self.assertIn(v, ints)
                if proto < 3:  # bytes through _codecs.encode(latin1)
                    globs = [a for n, a, _ in got if n == "GLOBAL"]
                    self.assertIn("_codecs encode", globs)

    def test_string_opcodes(self):
        text = "a\\b\nc\u00e9"
        cases = {"short": "SHORT_BINUNICODE", "bin": "BINUNICODE",
                 "bin8": "BINUNICODE8", "unicode": "UNICODE"}
        for how, opname in cases.items():
            for escape in (False, True):
                em = pb.Emitter(4)
                em.string(text, how, escape)
                em.stop()
                got = ops(em.getvalue())
                with self.subTest(how=how, escape=escape):
                    self.assertEqual(got[0][:2], (opname, text))
        em = pb.Emitter(4)
        self.assertRaises(ValueError, em.string, "x", "nope")

    def test_stack_global_and_global(self):
        d4 = pb.payload_pickle(pb.call("os", "system", "/bin/true"), 4)
        self.assertIn("STACK_GLOBAL", [n for n, _, _ in ops(d4)])
        d2 = pb.payload_pickle(pb.call("os", "system", "/bin/true"), 2)
        self.assertIn(("GLOBAL", "os system"),
                      [(n, a) for n, a, _ in ops(d2)])
        d = pb.payload_pickle(Call(StackGlobal(Str("os", "bin8"),
                                               Str("system", "unicode", True)),
                                   ("x",)), 2)
        names = [n for n, _, _ in ops(d)]
        self.assertEqual(names[1:4], ["BINUNICODE8", "UNICODE", "STACK_GLOBAL"])

    def test_put_key_reuse_overwrites_the_same_slot(self):
        d = pb.payload_pickle(Seq((Put("a", 1), Put("b", 2), Put("a", 3),
                                   Ref("a"))), 2)
        puts = [a for n, a, _ in ops(d) if n == "BINPUT"]
        self.assertEqual(puts, [0, 1, 0])
        gets = [a for n, a, _ in ops(d) if n == "BINGET"]
        self.assertEqual(gets, [0])
        # pickletools.dis, a memo-tracking reader, refuses the overwrite.
        self.assertRaises(ValueError, pickletools.dis, d, io.StringIO())

    def test_long_memo_indices(self):
        em = pb.Emitter(2, memo_base=300)
        em.expr(Seq((Put("x", 1), Ref("x"))))
        em.stop()
        names = [n for n, _, _ in ops(em.getvalue())]
        self.assertIn("LONG_BINPUT", names)
        self.assertIn("LONG_BINGET", names)

    def test_bad_inputs(self):
        self.assertRaises(ValueError, pb.Emitter, 6)
        self.assertRaises(TypeError, pb.payload_pickle, object(), 2)


class Injection(unittest.TestCase):
    HOST = pickle.dumps({"w": [1.0, 2.0], "name": "host"}, protocol=2)

    def test_prefix_inject_keeps_host(self):
        payload = pb.payload_pickle(pb.call("os", "system", "/bin/true"), 4)
        out = pb.prefix_inject(self.HOST, payload)
        self.assertEqual(out[:2], self.HOST[:2])
        seg_len = len(payload) - 2
        self.assertEqual(out[2 + seg_len - 1:2 + seg_len], b"0")
        self.assertEqual(out[:2] + out[2 + seg_len:], self.HOST)
        got = ops(out)
        self.assertEqual(got[-1][2], len(out) - 1)

    def test_prefix_inject_framed_payload_ends_frame_on_pop(self):
        payload = pickle.dumps(_Reduce(), protocol=5)  # framed
        out = pb.prefix_inject(self.HOST, payload)
        got = ops(out)
        frame = next(a for n, a, _ in got if n == "FRAME")
        frame_pos = next(p for n, _, p in got if n == "FRAME")
        end = frame_pos + 9 + frame
        self.assertEqual(out[end - 1:end], b"0")  # STOP replaced in place
        self.assertEqual(out[end:], self.HOST[2:])

    def test_prefix_inject_rejects_bad_inputs(self):
        good = pb.payload_pickle(1, 2)
        self.assertRaises(ValueError, pb.prefix_inject, self.HOST, good[:-1])
        self.assertRaises(ValueError, pb.prefix_inject, self.HOST, good + b"x")
        self.assertRaises(ValueError, pb.prefix_inject, b"N.", good)
        self.assertRaises(ValueError, pb.prefix_inject, self.HOST[:-1], good)

    def test_suffix_inject_runs_after_host(self):
        def suffix(em, slot):
            em.expr(pb.call("operator", "iadd",
                            pb.Raw(em.get_bytes(slot)), 0))
            em.pop()
        out = pb.suffix_inject(self.HOST, suffix)
        self.assertEqual(out[:len(self.HOST) - 1], self.HOST[:-1])
        got = ops(out)
        names = [n for n, _, _ in got]
        i = names.index("EMPTY_TUPLE", len(ops(self.HOST)) - 2)
        self.assertEqual(names[i:i + 3], ["EMPTY_TUPLE", "POP", "LONG_BINPUT"])
        self.assertEqual(got[i + 2][1], 100000)
        self.assertIn(("LONG_BINGET", 100000), [(n, a) for n, a, _ in got])
        self.assertEqual(names[-2:], ["POP", "STOP"])

    def test_prefix_raw_and_stream_end(self):
        out = pb.prefix_raw(self.HOST, b"\xff")
        self.assertEqual(out, self.HOST[:2] + b"\xff" + self.HOST[2:])
        two = self.HOST + self.HOST
        self.assertEqual(pb.stream_end(two), len(self.HOST))
        self.assertEqual(pb.stream_end(two, len(self.HOST)), len(two))

    def test_host_memo_len(self):
        self.assertEqual(pb.host_memo_len(pb.payload_pickle(1, 2)), 0)
        self.assertGreater(pb.host_memo_len(self.HOST), 0)


class _Reduce:
    def __reduce__(self):
        import os
        return os.system, ("/bin/true",)


if __name__ == "__main__":
    unittest.main()
