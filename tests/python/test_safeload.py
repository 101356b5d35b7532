"""Units of the host-side load (python/dynahug/_safeload.py) on hand-made
verdicts: no helper, no sandbox. Only benign pickles are unpickled here;
refusals are checked with pickles whose refused global would be harmless
anyway (builtins.print), and before it is looked up."""

import collections
import errno
import io
import os
import pickle
import unittest

import numpy

import dynahug
from dynahug import _safeload

VERDICT = dynahug.Verdict(label='benign', loaded=True, name='unit')


class RestrictedUnpicklerTest(unittest.TestCase):
    def test_allowed_globals_resolve_and_others_are_refused_by_name(self):
        data = pickle.dumps(collections.OrderedDict(a=1))
        allowed = {('collections', 'OrderedDict')}
        self.assertEqual(
            _safeload.load_pickle(data, allowed, VERDICT, {}),
            collections.OrderedDict(a=1))
        with self.assertRaises(dynahug.UnvettedGlobalError) as ctx:
            _safeload.load_pickle(data, set(), VERDICT, {})
        e = ctx.exception
        self.assertEqual((e.module, e.name), ('collections', 'OrderedDict'))
        self.assertIs(e.verdict, VERDICT)
        self.assertIsInstance(e, dynahug.MaliciousModelError)

    def test_refusal_happens_before_the_module_is_imported(self):
        data = b'cdynahug_never_imported_module\nfn\n)R.'
        with self.assertRaises(dynahug.UnvettedGlobalError):
            _safeload.load_pickle(data, set(), VERDICT, {})
        import sys
        self.assertNotIn('dynahug_never_imported_module', sys.modules)

    def test_every_way_to_name_a_global_goes_through_the_check(self):
        # GLOBAL, STACK_GLOBAL, INST and an extension code.
        import copyreg
        copyreg.add_extension('builtins', 'print', 0x7ffffff0 - 0x7fff0000)
        try:
            cases = {
                'GLOBAL': b'cbuiltins\nprint\n.',
                'STACK_GLOBAL': b'\x80\x04\x8c\x08builtins\x8c\x05print\x93.',
                'INST': b'(ibuiltins\nprint\n.',
                'EXT4': b'\x80\x02\x84' +
                        (0x7ffffff0 - 0x7fff0000).to_bytes(4, 'little') + b'.',
            }
            for name, data in cases.items():
                with self.subTest(opcode=name):
                    with self.assertRaises(dynahug.UnvettedGlobalError):
                        _safeload.load_pickle(data, set(), VERDICT, {})
        finally:
            copyreg.remove_extension('builtins', 'print',
                                     0x7ffffff0 - 0x7fff0000)

    def test_pickle_load_leaves_a_file_just_past_the_pickle(self):
        a, b = pickle.dumps([1]), pickle.dumps([2])
        f = io.BytesIO(a + b)
        data = f.read()
        self.assertEqual(_safeload.load_pickle(data, set(), VERDICT, {}, f),
                         [1])
        self.assertEqual(f.tell(), len(a))


class SealedFileTest(unittest.TestCase):
    def test_the_copy_is_exact_and_cannot_change(self):
        import fcntl
        data = os.urandom(100000)
        with _safeload.sealed_file(data) as f:
            self.assertEqual(f.read(), data)
            seals = fcntl.fcntl(f.fileno(), fcntl.F_GET_SEALS)
            for seal in (fcntl.F_SEAL_WRITE, fcntl.F_SEAL_GROW,
                         fcntl.F_SEAL_SHRINK, fcntl.F_SEAL_SEAL):
                self.assertTrue(seals & seal, seal)
            with self.assertRaises(OSError) as ctx:
                os.pwrite(f.fileno(), b'x', 0)
            self.assertIn(ctx.exception.errno, (errno.EPERM, errno.EBADF))


class NumpyLoadTest(unittest.TestCase):
    def original(self):
        return numpy.load

    def test_plain_arrays_load_without_unpickling(self):
        buf = io.BytesIO()
        numpy.save(buf, numpy.arange(12.0).reshape(3, 4))
        got = _safeload.load_numpy(self.original(), buf.getvalue(), set(),
                                   VERDICT, {'allow_pickle': True})
        numpy.testing.assert_array_equal(got, numpy.arange(12.0).reshape(3, 4))

    def test_object_arrays_go_through_the_restricted_unpickler(self):
        buf = io.BytesIO()
        numpy.save(buf, numpy.array([collections.OrderedDict(a=1), 2],
                                    dtype=object))
        with self.assertRaises(dynahug.UnvettedGlobalError):
            _safeload.load_numpy(self.original(), buf.getvalue(), set(),
                                 VERDICT, {})
        allowed = {('numpy.core.multiarray', '_reconstruct'),
                   ('numpy', 'ndarray'), ('numpy', 'dtype'),
                   ('collections', 'OrderedDict')}
        got = _safeload.load_numpy(self.original(), buf.getvalue(), allowed,
                                   VERDICT, {})
        self.assertEqual(got[0], collections.OrderedDict(a=1))

    def test_npz_without_objects_is_a_plain_npzfile(self):
        buf = io.BytesIO()
        numpy.savez(buf, a=numpy.arange(3), b=numpy.ones(2))
        got = _safeload.load_numpy(self.original(), buf.getvalue(), set(),
                                   VERDICT, {})
        self.assertIs(type(got), numpy.lib.npyio.NpzFile)
        numpy.testing.assert_array_equal(got['a'], numpy.arange(3))

    def test_npz_object_members_are_restricted(self):
        buf = io.BytesIO()
        numpy.savez(buf, a=numpy.arange(3),
                    o=numpy.array([collections.OrderedDict(x=1)],
                                  dtype=object))
        got = _safeload.load_numpy(self.original(), buf.getvalue(), set(),
                                   VERDICT, {})
        self.assertIsInstance(got, numpy.lib.npyio.NpzFile)
        numpy.testing.assert_array_equal(got['a'], numpy.arange(3))
        with self.assertRaises(dynahug.UnvettedGlobalError):
            got['o']


if __name__ == '__main__':
    unittest.main()
