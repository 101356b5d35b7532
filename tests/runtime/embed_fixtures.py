"""Generates BENIGN fixtures for the embed/observer tests and records what
the plain, uninstrumented loaders return for them (the differential
reference). Run with Debian's /usr/bin/python3:

    embed_fixtures.py OUTDIR

Writes OUTDIR/<name> files, OUTDIR/reference.tsv ("name<TAB>loader<TAB>
type-or-!ExceptionType") and OUTDIR/<name>.genops ("offset<TAB>opcode" lines
from pickletools.genops over every pickle stream the loader reads).
Nothing here is malicious: stdlib/torch/numpy/sklearn objects only.
"""
import collections, datetime, decimal, fractions, io, os, pickle, pickletools
import sys, types, zipfile

import joblib
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
P = lambda n: os.path.join(out, n)
torch.manual_seed(0)

# A class from a module that is not installed, defined here only to write
# the pickle; the loaders must resolve it to a stub.
fake = types.ModuleType('transformers.training_args')
class TrainingArguments:
    pass
TrainingArguments.__module__ = 'transformers.training_args'
fake.TrainingArguments = TrainingArguments
sys.modules['transformers.training_args'] = fake
parent = types.ModuleType('transformers')
parent.training_args = fake
sys.modules['transformers'] = parent

stdlib_obj = {'od': collections.OrderedDict(a=1, b=[1, 2.5, 'x']),
              'when': datetime.datetime(2024, 1, 2, 3, 4, 5),
              'dec': decimal.Decimal('1.25'), 'frac': fractions.Fraction(1, 3),
              'set': {1, 2, 3}, 'bytes': b'\x00\x01', 'counter':
              collections.Counter('hello'), 'nested': (None, True, 2 ** 70)}
for proto in range(6):
    with open(P('plain_p%d.pkl' % proto), 'wb') as f:
        pickle.dump(stdlib_obj, f, protocol=proto)
# Opcode-heavy (about 700k opcodes) for throughput measurements.
with open(P('many_ops.pkl'), 'wb') as f:
    pickle.dump([{'a': i, 'b': str(i), 'c': (i, 1.5)} for i in range(50000)], f, protocol=4)
# INST and OBJ opcodes (protocol 0/1 class instantiation), hand-written.
with open(P('inst.pkl'), 'wb') as f:
    f.write(b"(S'1/3'\nifractions\nFraction\np0\n.")
with open(P('obj.pkl'), 'wb') as f:
    f.write(b"(cfractions\nFraction\nS'2/3'\no.")
ta = TrainingArguments()
ta.learning_rate = 0.001
ta.output_dir = 'out'
with open(P('missing_module.pkl'), 'wb') as f:
    pickle.dump({'args': ta, 'step': 10}, f, protocol=2)
# A raw pickle named .bin: torch.load falls back to the legacy path.
with open(P('raw_model.bin'), 'wb') as f:
    pickle.dump({'weights': [1.0, 2.0]}, f, protocol=2)

net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
torch.save(net.state_dict(), P('state_dict.pt'))
torch.save(net, P('module.pt'))
torch.save(net.state_dict(), P('legacy.pt'), _use_new_zipfile_serialization=False)
torch.save({'args': ta, 'state': net.state_dict()}, P('missing_module.pt'))
torch.save({'big': torch.zeros(8 << 20), 'small': torch.ones(3)}, P('big.pt'))


# Storage bytes a load must not depend on (issue 10): the same checkpoints
# with every storage byte overwritten (CRCs left stale), and the legacy file
# cut in the middle of its inline storage data.
def overwrite_storages(src, dst):
    data = bytearray(open(src, 'rb').read())
    with zipfile.ZipFile(src) as z:
        for info in z.infolist():
            if '/data/' not in info.filename:
                continue
            at = info.header_offset
            name_len = int.from_bytes(data[at + 26:at + 28], 'little')
            extra_len = int.from_bytes(data[at + 28:at + 30], 'little')
            start = at + 30 + name_len + extra_len
            data[start:start + info.compress_size] = bytes(
                (0xA5 ^ (i * 131)) & 0xFF for i in range(info.compress_size))
    open(dst, 'wb').write(data)


overwrite_storages(P('state_dict.pt'), P('state_dict_garbage.pt'))
overwrite_storages(P('big.pt'), P('big_garbage.pt'))
legacy = open(P('legacy.pt'), 'rb').read()
stream = io.BytesIO(legacy)
for _ in range(5):  # magic, protocol, sys_info, model, storage keys
    for _op in pickletools.genops(stream):
        pass
storage_at = stream.tell()
open(P('legacy_truncated.pt'), 'wb').write(
    legacy[:storage_at + (len(legacy) - storage_at) // 2])

X = np.random.RandomState(0).rand(40, 3)
y = (X[:, 0] > 0.5).astype(int)
clf = LogisticRegression().fit(X, y)
joblib.dump(clf, P('model.joblib'))
joblib.dump({'clf': clf, 'arr': X}, P('model_z.joblib'), compress=3)
np.save(P('arr.npy'), X)
np.save(P('obj.npy'), np.array([{'a': 1}, [1, 2], 'x'], dtype=object), allow_pickle=True)
np.savez(P('arrs.npz'), a=X, b=np.arange(5))
np.savez(P('objs.npz'), plain=np.arange(3), o=np.array([{'a': 1}, fractions.Fraction(1, 2)], dtype=object))

del sys.modules['transformers.training_args'], sys.modules['transformers']

loaders = {
    'torch.load': lambda p: torch.load(p, map_location='cpu'),
    'joblib.load': joblib.load,
    'numpy.load': lambda p: np.load(p, allow_pickle=True),
    'pickle.load': lambda p: pickle.load(open(p, 'rb')),
}
cases = [('plain_p%d.pkl' % i, 'pickle.load') for i in range(6)] + [
    ('inst.pkl', 'pickle.load'), ('obj.pkl', 'pickle.load'),
    ('raw_model.bin', 'torch.load'), ('state_dict.pt', 'torch.load'),
    ('module.pt', 'torch.load'), ('legacy.pt', 'torch.load'),
    ('big.pt', 'torch.load'), ('model.joblib', 'joblib.load'),
    ('model_z.joblib', 'joblib.load'), ('arr.npy', 'numpy.load'),
    ('obj.npy', 'numpy.load'), ('arrs.npz', 'numpy.load'), ('objs.npz', 'numpy.load'),
    ('plain_p2.pkl', 'numpy.load'), ('plain_p4.pkl', 'torch.load')]
# (missing_module.* are not here: the plain loaders raise ModuleNotFoundError
# where dynahug deliberately substitutes stubs; see MissingModuleResolvesToStub.)
with open(P('reference.tsv'), 'w') as ref:
    for name, loader in cases:
        try:
            t = type(loaders[loader](P(name)))
            res = '%s.%s' % (t.__module__, t.__qualname__)
        except BaseException as e:
            res = '!%s.%s' % (type(e).__module__, type(e).__qualname__)
        ref.write('%s\t%s\t%s\n' % (name, loader, res))


def genops_all(data, max_streams):
    lines, f = [], io.BytesIO(data)
    for _ in range(max_streams):
        if f.tell() >= len(data):
            break
        for op, arg, pos in pickletools.genops(f):
            lines.append('%d\t%s' % (pos, op.name))
    return lines


for name in ['plain_p%d.pkl' % i for i in range(6)] + ['inst.pkl', 'obj.pkl', 'missing_module.pkl']:
    with open(P(name), 'rb') as f:
        ops = genops_all(f.read(), 1)
    open(P(name + '.genops'), 'w').write('\n'.join(ops) + '\n')
with zipfile.ZipFile(P('state_dict.pt')) as z:
    data = z.read([n for n in z.namelist() if n.endswith('/data.pkl')][0])
open(P('state_dict.pt.genops'), 'w').write('\n'.join(genops_all(data, 1)) + '\n')
# Legacy: magic, protocol, sys_info, model, storage keys; raw storages follow.
with open(P('legacy.pt'), 'rb') as f:
    ops = genops_all(f.read(), 5)
open(P('legacy.pt.genops'), 'w').write('\n'.join(ops) + '\n')
print('ok')
