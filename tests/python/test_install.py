"""`cmake --install` of the Python package, and the environment switch:
DYNAHUG_GUARD=1 patches the loaders of a fresh python3 process with no
change to its code (dynahug-guard.pth), and without it nothing is patched
or even imported.

The build is installed into a temporary prefix. For /usr/local the package
directory (lib/python3.X/dist-packages) is on Debian's sys.path as a site
directory; a temporary prefix is not, so the fresh processes are given it
as their user site directory (PYTHONUSERBASE + the site-packages name
Python looks for): a site directory, where .pth files are processed, as on
a real installation. PYTHONPATH would not do (it skips .pth files).
"""

import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import unittest

import util

CMAKE = os.environ['DYNAHUG_CMAKE']
BUILD = os.environ['DYNAHUG_BUILD_DIR']


class InstallTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix='dynahug_install_')
        cls.prefix = os.path.join(cls.tmp.name, 'prefix')
        subprocess.run([CMAKE, '--install', BUILD, '--prefix', cls.prefix],
                       check=True, stdout=subprocess.DEVNULL)
        ver = 'python%d.%d' % sys.version_info[:2]
        cls.site = os.path.join(cls.prefix, 'lib', ver, 'dist-packages')
        userbase = os.path.join(cls.tmp.name, 'userbase')
        os.makedirs(os.path.join(userbase, 'lib', ver))
        os.symlink(cls.site, os.path.join(userbase, 'lib', ver,
                                          'site-packages'))
        cls.env = {k: v for k, v in os.environ.items()
                   if k not in ('PYTHONPATH', 'DYNAHUG_BIN', 'DYNAHUG_GUARD')}
        cls.env['PYTHONUSERBASE'] = userbase

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_python(self, code, **env):
        e = dict(self.env, **env)
        return subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                              env=e, capture_output=True, text=True,
                              timeout=300)

    def test_installed_files(self):
        for rel in ('bin/dynahug', 'share/dynahug/default.dhm'):
            self.assertTrue(os.path.exists(os.path.join(self.prefix, rel)),
                            rel)
        for rel in ('dynahug/__init__.py', 'dynahug/_config.py',
                    'dynahug-guard.pth'):
            self.assertTrue(os.path.exists(os.path.join(self.site, rel)), rel)
        with open(os.path.join(self.site, 'dynahug', '_config.py')) as f:
            self.assertIn(os.path.join(self.prefix, 'bin', 'dynahug'),
                          f.read())

    def test_guard_switch_patches_a_fresh_process(self):
        marker = os.path.join(util.PWNED, 'py_guard_%d' % os.getpid())
        payload = util.marker_payload(marker)
        good = util.benign_state()
        code = '''
            import pickle, sys
            assert hasattr(pickle.loads, '__dynahug_original__'), pickle.loads
            import dynahug, os
            assert os.path.realpath(dynahug.__file__).startswith(%r), \
                dynahug.__file__
            assert pickle.loads(%r)['name'] == 'mlp'
            try:
                pickle.loads(%r)
            except dynahug.MaliciousModelError as e:
                print('refused', e.verdict.label)
            else:
                print('loaded')
            import numpy
            assert hasattr(numpy.load, '__dynahug_original__')
        ''' % (self.site, good, payload)
        r = self.run_python(code, DYNAHUG_GUARD='1')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), 'refused malicious', r.stderr)
        self.assertFalse(os.path.exists(marker))

    def test_without_the_switch_nothing_is_patched_or_imported(self):
        for value in (None, '0', ''):
            env = {} if value is None else {'DYNAHUG_GUARD': value}
            r = self.run_python('''
                import pickle, sys
                assert not hasattr(pickle.loads, '__dynahug_original__')
                assert 'dynahug' not in sys.modules, 'imported at start-up'
                import dynahug, os
                print(os.path.realpath(dynahug.__file__))
            ''', **env)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(r.stdout.startswith(self.site), r.stdout)

    def test_python_m_dynahug_scan_is_the_cli(self):
        r = self.run_python('''
            import runpy, sys
            sys.argv = ['dynahug', 'scan', '--format', 'json', %r]
            runpy.run_module('dynahug', run_name='__main__')
        ''' % os.path.join(util.SOURCE_DIR, 'examples', 'embeddings.npy'))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"verdict": "benign"', r.stdout)
        r = subprocess.run([sys.executable, '-m', 'dynahug', 'scan',
                            '--no-such-flag', 'x'], env=self.env,
                           capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown option '--no-such-flag'", r.stderr)


if __name__ == '__main__':
    unittest.main()
