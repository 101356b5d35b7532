"""Benign-corpus fixture of the integration tests.

Usage: /usr/bin/python3 make_benign_fixture.py SOURCE_DIR OUT_DIR

Generates the small benign corpus into OUT_DIR (tools/corpus/generate.py
--small --only benign), then loads every file the plain way, outside any
sandbox, and writes OUT_DIR/plain_loads.json:

  {"<manifest path>": {"type": "<module>.<qualname>" or "",
                       "digest": "sha256:<hex> nodes=N bytes=B" or "",
                       "error_type": "<module>.<qualname>" or "",
                       "error": "<message>"}, ...}

For archives the type and digest are the comma-joined types and digests of
params.members, loaded from the unpacked members in manifest order.

The digest is value_digest() of runtime/embed/value_digest.py, the very
source the dynahug binary runs on the object its sandboxed load returns
(Trace.loaded_digest), with the same lazy-storage threshold: a torch.load
storage above LAZY_STORAGE_BYTES (LoadOptions::lazy_storage_bytes) is
covered by its size only.

SAFETY: only entries labelled benign are ever loaded, and the corpus is
generated with --only benign; the script refuses to load anything else.
"""

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile


# LoadOptions::lazy_storage_bytes (runtime/embed/loader.h), dynahug's default.
LAZY_STORAGE_BYTES = 1 << 20


def load_value_digest(source):
    """value_digest() of runtime/embed/value_digest.py under `source`."""
    path = os.path.join(source, 'runtime', 'embed', 'value_digest.py')
    with open(path) as f:
        code = compile(f.read(), path, 'exec')
    namespace = {'__name__': 'dynahug_value_digest'}
    exec(code, namespace)
    return namespace['value_digest']


value_digest = None  # set by main()


def tname(t):
    return '%s.%s' % (t.__module__, t.__qualname__)


def plain_load(path, loader):
    """The call a user makes for this loader (the manifest's params.loader)."""
    if loader == 'torch.load':
        import torch
        return torch.load(path, map_location='cpu')
    if loader == 'joblib.load':
        import joblib
        return joblib.load(path)
    if loader == 'numpy.load':
        import numpy
        return numpy.load(path, allow_pickle=True)
    if loader == 'pandas.read_pickle':
        import pandas
        return pandas.read_pickle(path)
    if loader == 'dill.load':
        import dill
        with open(path, 'rb') as f:
            return dill.load(f)
    if loader == 'pickle.load':
        import pickle
        with open(path, 'rb') as f:
            return pickle.load(f)
    raise ValueError('unknown loader %r' % loader)


def unpack(path, wrapper, dest):
    """Unpacks an archive the way a user would (zip, tar, tar.gz, 7z)."""
    if wrapper == 'zip':
        with zipfile.ZipFile(path) as z:
            z.extractall(dest)
    elif wrapper in ('tar', 'tar.gz', 'tgz', 'gzip'):
        with tarfile.open(path) as t:
            t.extractall(dest)
    elif wrapper == '7z':
        subprocess.run(['7z', 'x', '-y', '-o' + dest, path], check=True,
                       stdout=subprocess.DEVNULL)
    else:
        raise ValueError('unknown archive wrapper %r' % wrapper)


def describe(fn, loader):
    try:
        obj = fn()
    except BaseException as e:  # record every failure, e.g. missing modules
        return {'type': '', 'digest': '', 'error_type': tname(type(e)),
                'error': str(e)[:300]}
    threshold = LAZY_STORAGE_BYTES if loader == 'torch.load' else -1
    return {'type': tname(type(obj)), 'digest': value_digest(obj, threshold),
            'error_type': '', 'error': ''}


def main(argv):
    if len(argv) != 3:
        sys.stderr.write(__doc__)
        return 2
    source, out = argv[1], argv[2]
    global value_digest
    value_digest = load_value_digest(source)
    env = dict(os.environ)
    subprocess.run([sys.executable, os.path.join(source, 'tools', 'corpus',
                                                 'generate.py'),
                    '--out', out, '--small', '--only', 'benign'],
                   check=True, env=env)
    with open(os.path.join(out, 'manifest.json')) as f:
        manifest = json.load(f)
    results = {}
    for entry in manifest['files']:
        if entry['label'] != 'benign':
            raise SystemExit('refusing to load non-benign entry ' +
                             entry['path'])
        path = os.path.join(out, entry['path'])
        params = entry['params']
        if params['loader'] != 'archive':
            results[entry['path']] = describe(
                lambda: plain_load(path, params['loader']), params['loader'])
            continue
        with tempfile.TemporaryDirectory(prefix='dynahug_integ_') as tmp:
            unpack(path, params['wrapper'], tmp)
            parts = [describe(lambda m=m: plain_load(
                os.path.join(tmp, m['name']), m['loader']), m['loader'])
                for m in params['members']]
        results[entry['path']] = {
            'type': ','.join(p['type'] for p in parts),
            'digest': ','.join(p['digest'] for p in parts if p['digest']),
            'error_type': ','.join(p['error_type'] for p in parts
                                   if p['error_type']),
            'error': '; '.join(p['error'] for p in parts if p['error']),
        }
    with open(os.path.join(out, 'plain_loads.json.tmp'), 'w') as f:
        json.dump(results, f, indent=1, sort_keys=True)
    os.replace(os.path.join(out, 'plain_loads.json.tmp'),
               os.path.join(out, 'plain_loads.json'))
    failed = sum(1 for r in results.values() if r['error_type'])
    print('make_benign_fixture: %d files, %d plain loads failed'
          % (len(results), failed))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
