"""dynahug's Python API on real sandboxed analyses (the helper process,
`dynahug serve`): scan, load with each loader, the restricted host-side
load against a sandbox-aware payload, the policy knobs, the verdict cache,
and patch()/unpatch()/guard()."""

import dataclasses
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import unittest
import zipfile

import dynahug
from dynahug import _core, _patch
from same import same
import util


def examples(name):
    return os.path.join(util.SOURCE_DIR, 'examples', name)


class ScanAndLoadTest(unittest.TestCase):
    def setUp(self):
        self.pwned = util.snapshot_pwned()

    def tearDown(self):
        self.assertEqual(util.snapshot_pwned(), self.pwned,
                         'a marker appeared under /tmp/dynahug_pwned: '
                         'sandbox escape or host-side execution')

    def test_scan_of_a_benign_example(self):
        v = dynahug.scan(examples('tiny_mlp_state_dict.pt'))
        self.assertEqual(v.label, 'benign', v.summary())
        self.assertTrue(v.benign and not v.malicious)
        self.assertEqual(v.loader, 'torch.load')
        self.assertEqual(v.format, 'TORCH_ZIP')
        self.assertLessEqual(v.score, v.threshold)
        self.assertIn(dynahug.ResolvedGlobal('torch._utils',
                                             '_rebuild_tensor_v2', False),
                      v.globals)
        self.assertTrue(v.model)

    def test_version_is_the_binarys(self):
        out = subprocess.run([dynahug.policy().helper_binary(), '--version'],
                             capture_output=True, text=True, check=True)
        self.assertEqual(out.stdout.split(), ['dynahug', dynahug.__version__])

    def test_scan_with_trace(self):
        v = dynahug.scan(examples('embeddings.npy'), trace=True)
        self.assertIsInstance(v.trace, dict)
        # The array data is not read in the sandbox: the trace has the
        # content key; the verdict also has the bytes' SHA-256 (hashed from
        # memory by the helper).
        self.assertEqual(v.trace['file']['contentKey'], v.content_key)
        with open(examples('embeddings.npy'), 'rb') as f:
            self.assertEqual(v.sha256, hashlib.sha256(f.read()).hexdigest())
        self.assertTrue(v.trace['events'])

    def test_load_equals_the_plain_loaders_on_the_examples(self):
        import joblib
        import numpy
        import torch
        cases = [
            ('tiny_mlp_state_dict.pt', {'map_location': 'cpu'},
             lambda p: torch.load(p, map_location='cpu')),
            ('iris_like_classifier.joblib', {}, joblib.load),
            ('embeddings.npy', {},
             lambda p: numpy.load(p, allow_pickle=True)),
        ]
        for name, kwargs, plain in cases:
            with self.subTest(name=name):
                got = dynahug.load(examples(name), **kwargs)
                self.assertIsNone(same(plain(examples(name)), got))

    def test_load_accepts_bytes_and_file_objects(self):
        data = util.benign_state()
        self.assertIsNone(same(pickle.loads(data), dynahug.load(data)))
        f = io.BytesIO(data + b'trailing')
        self.assertIsNone(same(pickle.loads(data),
                               dynahug.load(f, loader='pickle.load')))

    def test_malicious_bytes_raise_with_the_verdict(self):
        marker = os.path.join(util.PWNED, 'py_api_%d' % os.getpid())
        with self.assertRaises(dynahug.MaliciousModelError) as ctx:
            dynahug.load(util.marker_payload(marker))
        v = ctx.exception.verdict
        self.assertEqual(v.label, 'malicious')
        self.assertGreater(v.score, v.threshold)
        self.assertTrue(v.reasons)
        self.assertIn('MALICIOUS', str(ctx.exception))
        self.assertFalse(os.path.exists(marker))

    def test_inconclusive_raises_scan_error_in_strict_mode(self):
        # A zip archive with nothing loadable in it: it cannot be analysed,
        # so the analysis is inconclusive (never clean).
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, 'w') as z:
            z.writestr('notes/readme.txt', 'no model here\n' * 50)
        v = dynahug.scan(buf.getvalue())
        self.assertEqual(v.label, 'error', v.summary())
        self.assertIn('nothing loadable', v.error)
        with self.assertRaises(dynahug.ScanError) as ctx:
            dynahug.load(buf.getvalue())
        self.assertEqual(ctx.exception.verdict.label, 'error')
        self.assertIn('inconclusive', str(ctx.exception))

    def test_what_did_not_load_in_the_sandbox_is_not_loaded_here(self):
        # A truncated benign pickle: its sandboxed load fails (for the
        # detector a normal ending, not a finding), so it is inconclusive
        # for loading.
        data = util.benign_state()[:-7]
        v = dynahug.scan(data)
        self.assertNotEqual(v.label, 'malicious', v.summary())
        self.assertFalse(v.loaded)
        self.assertIn('load failed', v.load_error)
        with self.assertRaises(dynahug.ScanError) as ctx:
            dynahug.load(data)
        self.assertIn('did not complete' if v.benign else 'inconclusive',
                      str(ctx.exception))


# A pickle that looks for the sandbox and stays quiet inside it: it takes
# the module and name of the global it resolves from the environment
# (os.getenv, which the sandbox scrubs), so in the sandbox it resolves
# builtins.str and builds a plain dict, and on a host with
# DYNAHUG_PROBE_MODULE/NAME set it resolves posix.system and would run a
# shell command creating a marker.
def sandbox_aware_payload(marker):
    cmd = 'mkdir -p %s && touch %s' % (util.PWNED, marker)
    return (b'\x80\x04}(\x8c\x05model\x8c\x04tiny'
            b'\x8c\x05probe'
            b'cos\ngetenv\n(\x8c\x14DYNAHUG_PROBE_MODULE\x8c\x08builtinstR'
            b'cos\ngetenv\n(\x8c\x12DYNAHUG_PROBE_NAME\x8c\x03strtR'
            b'\x93(' + b'\x8c' + bytes([len(cmd)]) + cmd.encode() +
            b'tRu.')


class SandboxAwarePayloadTest(unittest.TestCase):
    def setUp(self):
        self.pwned = util.snapshot_pwned()
        self.marker = os.path.join(util.PWNED, 'py_aware_%d' % os.getpid())
        self.payload = sandbox_aware_payload(self.marker)
        os.environ['DYNAHUG_PROBE_MODULE'] = 'posix'
        os.environ['DYNAHUG_PROBE_NAME'] = 'system'

    def tearDown(self):
        os.environ.pop('DYNAHUG_PROBE_MODULE', None)
        os.environ.pop('DYNAHUG_PROBE_NAME', None)
        self.assertFalse(os.path.exists(self.marker))
        self.assertEqual(util.snapshot_pwned(), self.pwned)

    def test_the_sandbox_saw_the_quiet_branch(self):
        v = dynahug.scan(self.payload)
        names = {(g.module, g.name) for g in v.globals}
        self.assertTrue(v.loaded, v.load_error)
        self.assertIn(('builtins', 'str'), names, v)
        self.assertIn(('os', 'getenv'), names, v)
        self.assertNotIn(('posix', 'system'), names, v)

    def test_host_side_unpickler_refuses_what_the_sandbox_never_resolved(self):
        v = dynahug.scan(self.payload)
        # Whatever the detector concluded, take the sandbox's globals as
        # vetted (as for a benign verdict): the host-side unpickler alone
        # must stop the other branch, before posix.system is looked up.
        as_benign = dataclasses.replace(v, label='benign')
        allowed = _core.vetted_globals(as_benign, dynahug.policy())
        with self.assertRaises(dynahug.UnvettedGlobalError) as ctx:
            _core.load_vetted('pickle.load', self.payload, allowed, as_benign,
                              {})
        self.assertEqual((ctx.exception.module, ctx.exception.name),
                         ('posix', 'system'))
        # Without the probe variables the host takes the quiet branch too,
        # and the same vetted globals load it.
        os.environ.pop('DYNAHUG_PROBE_MODULE')
        os.environ.pop('DYNAHUG_PROBE_NAME')
        quiet = _core.load_vetted('pickle.load', self.payload, allowed,
                                  as_benign, {})
        self.assertEqual(quiet['model'], 'tiny')

    def test_dynahug_load_refuses_it(self):
        with self.assertRaises(dynahug.MaliciousModelError):
            dynahug.load(self.payload)


class PolicyTest(unittest.TestCase):
    def tearDown(self):
        dynahug.configure(strict=True, allow_globals=(), cache=True)

    def test_cache_makes_the_second_load_free(self):
        data = util.benign_state() + b''  # fresh bytes object, same content
        dynahug.configure(cache=True)
        before = dynahug.stats()
        dynahug.load(data)
        dynahug.load(bytes(bytearray(data)))
        after = dynahug.stats()
        self.assertEqual(after['scans'] - before['scans'], 1)
        self.assertEqual(after['cache_hits'] - before['cache_hits'], 1)

    def test_no_cache_analyses_every_time(self):
        dynahug.configure(cache=False)
        before = dynahug.stats()['scans']
        dynahug.load(util.benign_state())
        dynahug.load(util.benign_state())
        self.assertEqual(dynahug.stats()['scans'] - before, 2)

    def test_allowlist_admits_an_extra_global(self):
        v = dynahug.scan(util.benign_state())
        self.assertTrue(v.benign, v.summary())
        payload = sandbox_aware_payload('/tmp/dynahug_pwned/never')
        as_benign = dataclasses.replace(v, label='benign')
        dynahug.configure(allow_globals=['os.getenv', 'builtins.str'])
        allowed = _core.vetted_globals(as_benign, dynahug.policy())
        self.assertIn(('os', 'getenv'), allowed)
        self.assertIn(('builtins', 'str'), allowed)
        obj = _core.load_vetted('pickle.load', payload, allowed, as_benign, {})
        self.assertEqual(obj['probe'], 'mkdir -p /tmp/dynahug_pwned && '
                                       'touch /tmp/dynahug_pwned/never')

    def test_non_strict_loads_plain_data_of_an_inconclusive_file(self):
        dynahug.configure(strict=False)
        # A JSON document is skipped (no code path); as a pickle it fails to
        # load, but it reaches the restricted loader with a warning only.
        with self.assertWarns(RuntimeWarning):
            with self.assertRaises(pickle.UnpicklingError):
                dynahug.load(b'{"a": 1}', loader='pickle.load')

    def test_bad_model_bundle_is_a_scan_error(self):
        dynahug.configure(model='/nonexistent/bundle.dhm')
        try:
            with self.assertRaises(dynahug.ScanError) as ctx:
                dynahug.scan(util.benign_state())
            self.assertIn('/nonexistent/bundle.dhm', str(ctx.exception))
        finally:
            dynahug.configure(model=None)


class PatchTest(unittest.TestCase):
    def originals(self):
        import joblib
        import numpy
        import torch
        return {
            'pickle.load': pickle.load, 'pickle.loads': pickle.loads,
            'torch.load': torch.load,
            'torch.serialization.load': torch.serialization.load,
            'joblib.load': joblib.load,
            'joblib.numpy_pickle.load': joblib.numpy_pickle.load,
            'numpy.load': numpy.load, 'numpy.lib.npyio.load':
                numpy.lib.npyio.load,
        }

    def test_patch_unpatch_round_trip_restores_every_function(self):
        before = self.originals()
        dynahug.patch()
        try:
            during = self.originals()
            for name, fn in during.items():
                self.assertIsNot(fn, before[name], name)
                self.assertIs(fn.__dynahug_original__, before[name], name)
            self.assertTrue(dynahug.patched())
            dynahug.patch()  # idempotent
            self.assertEqual(self.originals(), during)
        finally:
            dynahug.unpatch()
        after = self.originals()
        for name, fn in after.items():
            self.assertIs(fn, before[name], name)
        self.assertFalse(dynahug.patched())

    def test_guard_restores_and_nests(self):
        before = self.originals()
        with dynahug.guard():
            self.assertTrue(dynahug.patched())
            with dynahug.guard():
                self.assertTrue(dynahug.patched())
            self.assertTrue(dynahug.patched())
        self.assertEqual(self.originals(), before)
        with self.assertRaises(ZeroDivisionError):
            with dynahug.guard():
                1 / 0
        self.assertEqual(self.originals(), before)

    def test_patched_loaders_refuse_malicious_and_load_benign(self):
        import joblib
        import numpy
        import torch
        marker = os.path.join(util.PWNED, 'py_patch_%d' % os.getpid())
        bad = util.marker_payload(marker)
        good = util.benign_state()
        with dynahug.guard():
            self.assertEqual(pickle.loads(good)['name'], 'mlp')
            self.assertEqual(pickle.load(io.BytesIO(good))['bias'], 0.125)
            for fn in (pickle.loads, lambda b: pickle.load(io.BytesIO(b)),
                       lambda b: torch.load(io.BytesIO(b)),
                       lambda b: joblib.load(io.BytesIO(b)),
                       lambda b: numpy.load(io.BytesIO(b), allow_pickle=True)):
                with self.assertRaises(dynahug.MaliciousModelError):
                    fn(bad)
            got = torch.load(examples('tiny_mlp_state_dict.pt'))
        self.assertFalse(os.path.exists(marker))
        plain = torch.load(examples('tiny_mlp_state_dict.pt'))
        self.assertIsNone(same(plain, got))

    def test_pickle_load_leaves_the_file_after_the_pickle(self):
        a, b = pickle.dumps([1, 2]), pickle.dumps({'x': 3})
        f = io.BytesIO(a + b)
        with dynahug.guard():
            self.assertEqual(pickle.load(f), [1, 2])
            self.assertEqual(pickle.load(f), {'x': 3})
        self.assertEqual(f.read(), b'')

    def test_numpy_without_allow_pickle_is_not_analysed(self):
        import numpy
        before = dynahug.stats()
        with dynahug.guard():
            arr = numpy.load(examples('embeddings.npy'))
        self.assertEqual(dynahug.stats(), before)
        self.assertIsNone(same(numpy.load(examples('embeddings.npy')), arr))

    def test_modules_imported_after_patch_are_patched_on_import(self):
        code = textwrap.dedent('''
            import sys, dynahug
            dynahug.patch()
            assert 'numpy' not in sys.modules and 'joblib' not in sys.modules
            import numpy, joblib
            assert hasattr(numpy.load, '__dynahug_original__'), numpy.load
            assert hasattr(joblib.load, '__dynahug_original__'), joblib.load
            dynahug.unpatch()
            assert not hasattr(numpy.load, '__dynahug_original__')
            print('ok')
        ''')
        out = subprocess.run([sys.executable, '-c', code], check=True,
                             capture_output=True, text=True)
        self.assertEqual(out.stdout.strip(), 'ok', out.stderr)


class HelperTest(unittest.TestCase):
    def test_one_helper_is_reused_and_restarted_after_it_died(self):
        dynahug.scan(util.benign_state())
        first = _core._holder.helper
        dynahug.scan(pickle.dumps([1, 2, 3]))
        self.assertIs(_core._holder.helper, first)
        first.proc.kill()
        first.proc.wait()
        v = dynahug.scan(pickle.dumps([4, 5]))
        self.assertEqual(v.label, 'benign', v.summary())
        self.assertIsNot(_core._holder.helper, first)

    def test_forked_child_uses_its_own_helper(self):
        dynahug.scan(util.benign_state())
        parent_helper = _core._holder.helper.proc.pid
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                v = dynahug.scan(pickle.dumps({'child': 1}))
                os.write(w, ('%s %d' % (v.label, _core._holder.helper.proc.pid))
                         .encode())
            finally:
                os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        label, child_helper = os.read(r, 100).decode().split()
        os.close(r)
        self.assertEqual(label, 'benign')
        self.assertNotEqual(int(child_helper), parent_helper)
        # The parent's helper still answers.
        self.assertEqual(dynahug.scan(pickle.dumps([7])).label, 'benign')


class ServeProtocolTest(unittest.TestCase):
    """`dynahug serve` itself (runtime/cli/serve_command.h): the frames,
    and how it ends on bad input."""

    def start(self):
        p = subprocess.Popen([dynahug.policy().helper_binary(), 'serve',
                              '--no-prewarm'], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (p.kill(), p.wait(), p.stdout.close(),
                                 p.stderr.close(), p.stdin.close()
                                 if not p.stdin.closed else None))
        hello = self.frame(p)
        self.assertTrue(hello['ready'], hello)
        self.assertEqual(hello['pid'], p.pid)
        self.assertTrue(hello['model'])
        return p

    def frame(self, p):
        head = p.stdout.read(4)
        self.assertEqual(len(head), 4)
        return json.loads(p.stdout.read(struct.unpack('<I', head)[0]))

    def request(self, header, data, declared=None):
        return (struct.pack('<I', len(header)) + header +
                struct.pack('<Q', len(data) if declared is None else declared)
                + data)

    def test_a_scan_and_a_clean_end(self):
        p = self.start()
        data = pickle.dumps({'a': 1})
        p.stdin.write(self.request(b'op=scan\nname=x.pkl\n', data))
        p.stdin.flush()
        reply = self.frame(p)
        self.assertEqual(reply['verdict'], 'benign', reply)
        self.assertTrue(reply['loaded'])
        self.assertEqual(reply['loader'], 'pickle.load')
        self.assertFalse(reply['trace_follows'])
        p.stdin.close()
        self.assertEqual(p.wait(timeout=30), 0)

    def test_bad_requests_end_the_helper_with_a_reason(self):
        cases = {
            b'op=delete\n': "unknown op 'delete'",
            b'name=x\n': 'request without op=scan',
            b'op=scan\ncolour=red\n': "unknown header key 'colour'",
        }
        for header, why in cases.items():
            with self.subTest(header=header):
                p = self.start()
                p.stdin.write(self.request(header, b'x'))
                p.stdin.close()
                self.assertEqual(self.frame(p), {'fatal': why})
                self.assertEqual(p.wait(timeout=30), 2)

    def test_truncated_data_ends_the_helper(self):
        p = self.start()
        p.stdin.write(self.request(b'op=scan\n', b'0123456789',
                                   declared=100))
        p.stdin.close()
        self.assertEqual(self.frame(p), {'fatal': 'truncated data'})
        self.assertEqual(p.wait(timeout=30), 2)

    def test_bad_options_and_bundle(self):
        binary = dynahug.policy().helper_binary()
        r = subprocess.run([binary, 'serve', '--timeout', 'x'],
                           capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--timeout needs a positive integer, got 'x'", r.stderr)
        r = subprocess.run([binary, 'serve', '--model', '/nonexistent.dhm'],
                           capture_output=True, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 2)
        n = struct.unpack('<I', r.stdout[:4])[0]
        hello = json.loads(r.stdout[4:4 + n])
        self.assertFalse(hello['ready'])
        self.assertIn('/nonexistent.dhm', hello['error'])


if __name__ == '__main__':
    unittest.main()
