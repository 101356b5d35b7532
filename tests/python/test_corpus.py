"""dynahug.load on the generated corpora (CTest fixtures integ_benign and
integ_malicious, tests/integration/CMakeLists.txt):

- benign: every file whose plain load succeeds (the fixture's
  plain_loads.json) loads through dynahug.load, with the manifest's loader,
  to an object equal to the plain loader's (same types, tensors, arrays,
  state), and through the patched loader too for a sample;
- malicious: every file raises (MaliciousModelError for a conviction,
  ScanError for an inconclusive analysis: nothing is loaded either way) and
  no marker appears under /tmp/dynahug_pwned/. SAFETY: the host-side load
  is replaced by a sentinel during this test, so a file the detector missed
  fails the test instead of being unpickled outside the sandbox.

Which side runs is chosen by DYNAHUG_CORPUS_SIDE (one CTest per fixture).
"""

import json
import os
import unittest

import dynahug
from dynahug import _core
from same import same
import util

SIDE = os.environ.get('DYNAHUG_CORPUS_SIDE', 'benign')
ROOT = os.path.join(util.DATA_DIR, 'integration', SIDE)
# The loaders dynahug.load has a host-side load for, and the plain call the
# manifest's loader stands for.
PLAIN = {
    'torch.load': lambda p: __import__('torch').load(p, map_location='cpu'),
    'joblib.load': lambda p: __import__('joblib').load(p),
    'numpy.load': lambda p: __import__('numpy').load(p, allow_pickle=True),
    'pickle.load': lambda p: _pickle_load(p),
}


def _pickle_load(path):
    import pickle
    with open(path, 'rb') as f:
        return pickle.load(f)

KWARGS = {'torch.load': {'map_location': 'cpu'}, 'numpy.load':
          {'allow_pickle': True}}


def manifest():
    with open(os.path.join(ROOT, 'manifest.json')) as f:
        return json.load(f)['files']


@unittest.skipUnless(SIDE == 'benign', 'benign corpus side')
class BenignCorpusTest(unittest.TestCase):
    def test_loads_equal_the_plain_loaders(self):
        with open(os.path.join(ROOT, 'plain_loads.json')) as f:
            plain_ok = {k for k, v in json.load(f).items()
                        if not v['error_type']}
        compared, failures = 0, []
        for entry in manifest():
            # SAFETY: plain loads of benign entries only (like the fixture).
            self.assertEqual(entry['label'], 'benign')
            loader = entry['params'].get('loader')
            if loader not in PLAIN or entry['path'] not in plain_ok:
                continue
            path = os.path.join(ROOT, entry['path'])
            try:
                got = dynahug.load(path, loader=loader,
                                   **KWARGS.get(loader, {}))
            except Exception as e:
                failures.append('%s: %s: %s' % (entry['path'],
                                                type(e).__name__, e))
                continue
            diff = same(PLAIN[loader](path), got)
            if diff:
                failures.append('%s: %s' % (entry['path'], diff))
            compared += 1
        print('benign corpus: %d files compared, %d failed'
              % (compared, len(failures)))
        self.assertGreaterEqual(compared, 60)
        # A benign file dynahug convicts (a false positive of the default
        # bundle: tests/integration/scan_corpus_test.cc allows 2 %) is
        # refused, never loaded wrong; every other file must load equal.
        refused = [f for f in failures if 'MaliciousModelError' in f]
        others = [f for f in failures if f not in refused]
        self.assertEqual(others, [], '\n'.join(others))
        self.assertLessEqual(len(refused) * 100, compared * 2,
                             '\n'.join(refused))

    def test_patched_loaders_return_the_same_objects(self):
        seen = set()
        checked = 0
        for entry in manifest():
            loader = entry['params'].get('loader')
            if loader not in PLAIN or loader in seen:
                continue
            path = os.path.join(ROOT, entry['path'])
            try:
                plain = PLAIN[loader](path)
            except Exception:
                continue
            with dynahug.guard():
                try:
                    got = PLAIN[loader](path)
                except dynahug.MaliciousModelError:
                    continue  # a false positive: refused, try another
            self.assertIsNone(same(plain, got), entry['path'])
            seen.add(loader)
            checked += 1
        self.assertEqual(seen, set(PLAIN))


@unittest.skipUnless(SIDE == 'malicious', 'malicious corpus side')
class MaliciousCorpusTest(unittest.TestCase):
    def test_every_file_raises_and_leaves_no_marker(self):
        before = util.snapshot_pwned()
        raised = convicted = 0
        loaded = []
        files = [e for e in manifest() if e['label'] == 'malicious']

        class WouldLoad(Exception):
            pass

        def sentinel(*args, **kwargs):
            raise WouldLoad()

        real = _core.load_vetted
        _core.load_vetted = sentinel
        try:
            for entry in files:
                path = os.path.join(ROOT, entry['path'])
                try:
                    dynahug.load(path)
                except dynahug.MaliciousModelError:
                    raised += 1
                    convicted += 1
                except dynahug.ScanError:
                    raised += 1
                except WouldLoad:
                    loaded.append(entry['path'])
        finally:
            _core.load_vetted = real
        after = util.snapshot_pwned()
        print('malicious corpus: %d files, %d convicted, %d inconclusive, '
              '%d loaded' % (len(files), convicted, raised - convicted,
                             len(loaded)))
        self.assertGreater(len(files), 50)
        self.assertEqual(loaded, [])
        new = {p: s for p, s in after.items() if before.get(p) != s}
        self.assertEqual(new, {}, 'markers appeared: sandbox escape or '
                                  'host-side execution')


if __name__ == '__main__':
    unittest.main()
