"""Shared helpers of the Python package tests."""

import os
import pickle

PWNED = '/tmp/dynahug_pwned'
SOURCE_DIR = os.environ['DYNAHUG_SOURCE_DIR']
DATA_DIR = os.environ.get('DYNAHUG_TEST_DATA_DIR', '')


def snapshot_pwned():
    """{path: (size, mtime)} of everything under /tmp/dynahug_pwned/."""
    out = {}
    for root, _, files in os.walk(PWNED):
        for f in files:
            p = os.path.join(root, f)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


def exec_pickle(source):
    """A protocol-0 pickle calling builtins.exec(source, {}) (harmless
    probes only)."""
    return (b'cbuiltins\nexec\n(V' + source.replace('\\', '\\u005c')
            .replace('\n', '\\u000a').encode() + b'\n(dtR.')


def marker_payload(marker):
    """A malicious pickle that creates ``marker`` (under PWNED)."""
    return exec_pickle("import os; os.makedirs(%r, exist_ok=True); "
                       "open(%r, 'w').write('x')" % (PWNED, marker))


def benign_state():
    """A small benign pickle: what a user would save."""
    import collections
    return pickle.dumps(collections.OrderedDict(
        [('weight', [0.5, -1.25, 3.0]), ('bias', 0.125), ('name', 'mlp'),
         ('shape', (3,)), ('tags', {'a', 'b'})]), protocol=4)
