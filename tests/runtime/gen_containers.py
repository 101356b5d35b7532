#!/usr/bin/python3
"""Generates the container fixtures for tests/runtime (benign content only).

Usage: gen_containers.py OUT_DIR

Writes every fixture into OUT_DIR, plus:
  expectations.tsv  fixture <TAB> loader <TAB> accepted(0/1) <TAB> detail
                    whether the real Python loader accepts the file
  zip_listing.tsv   fixture <TAB> member <TAB> size <TAB> sha256
                    what Python's zipfile reads from each zip fixture
Runs once per script version (stamp file), under a lock so concurrent test
binaries share one run.
"""
import bz2
import fcntl
import gzip
import hashlib
import io
import lzma
import os
import pickle
import random
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
SCRIPT_HASH = hashlib.sha256(open(__file__, 'rb').read()).hexdigest()
STAMP = os.path.join(OUT, '.stamp')

lock = open(os.path.join(OUT, '.lock'), 'w')
fcntl.flock(lock, fcntl.LOCK_EX)
if os.path.exists(STAMP) and open(STAMP).read() == SCRIPT_HASH:
    sys.exit(0)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import joblib  # noqa: E402

torch.manual_seed(0)
expect = []
listing = []


def path(name):
    return os.path.join(OUT, name)


def write(name, data):
    with open(path(name), 'wb') as f:
        f.write(data)


def read(name):
    with open(path(name), 'rb') as f:
        return f.read()


def check(name, loader, fn):
    try:
        fn(path(name))
        expect.append((name, loader, 1, 'ok'))
    except Exception as e:  # record what the loader says
        expect.append((name, loader, 0, type(e).__name__))


def torch_load(p):
    torch.load(p, map_location='cpu')


def list_zip(name):
    with zipfile.ZipFile(path(name)) as z:
        for info in z.infolist():
            data = z.read(info)
            listing.append((name, info.filename, len(data),
                            hashlib.sha256(data).hexdigest()))


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.act = torch.nn.ReLU()

    def forward(self, x):
        return self.act(self.fc(x))


state = {'w': torch.arange(6, dtype=torch.float32).reshape(2, 3),
         'b': torch.ones(3, dtype=torch.float64)}

# --- torch -------------------------------------------------------------------
torch.save(state, path('sd_zip.pt'))
check('sd_zip.pt', 'torch', torch_load)
list_zip('sd_zip.pt')
torch.save(Net(), path('module_zip.pt'))
check('module_zip.pt', 'torch', torch_load)
list_zip('module_zip.pt')
torch.save(state, path('legacy.pt'), _use_new_zipfile_serialization=False)
check('legacy.pt', 'torch', torch_load)
torch.jit.save(torch.jit.trace(Net(), torch.ones(1, 4)), path('script.pt'))
check('script.pt', 'torch', torch_load)
list_zip('script.pt')


def legacy_tar():
    """The oldest torch format, laid out the way _legacy_load reads it."""
    class Ref:
        def __init__(self, key):
            self.key = key

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return obj.key if isinstance(obj, Ref) else None

    def dumps(obj):
        buf = io.BytesIO()
        P(buf, protocol=2).dump(obj)
        return buf.getvalue()

    values = np.arange(5, dtype=np.float32)
    storages = io.BytesIO()
    storages.write(pickle.dumps(1, protocol=2))
    storages.write(pickle.dumps((0, 'cpu', torch.FloatStorage), protocol=2))
    storages.write(struct.pack('<q', values.size) + values.tobytes())
    storages.write(pickle.dumps([], protocol=2))
    tensors = io.BytesIO()
    tensors.write(pickle.dumps(1, protocol=2))
    tensors.write(pickle.dumps((1, 0, torch.FloatTensor), protocol=2))
    tensors.write(struct.pack('<i', 1) + b'\0' * 4)
    tensors.write(struct.pack('<q', 5) + struct.pack('<q', 1) +
                  struct.pack('<q', 0))
    members = [
        ('sys_info', pickle.dumps({'protocol_version': 1001,
                                   'little_endian': True,
                                   'type_sizes': {'short': 2, 'int': 4,
                                                  'long': 4}}, protocol=2)),
        ('pickle', dumps({'weight': Ref('1')})),
        ('tensors', tensors.getvalue()),
        ('storages', storages.getvalue()),
    ]
    with tarfile.open(path('legacy_tar.pt'), 'w', format=tarfile.PAX_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


legacy_tar()
check('legacy_tar.pt', 'torch', torch_load)

# --- joblib ------------------------------------------------------------------
jobj = {'a': np.arange(10), 'b': np.ones((3, 3)),
        'o': np.array([{'x': 1}, 'text'], dtype=object), 'n': 'name'}
joblib.dump(jobj, path('plain.joblib'))
check('plain.joblib', 'joblib', joblib.load)
for comp in ['zlib', 'gzip', 'bz2', 'xz', 'lzma']:
    name = 'comp_%s.joblib' % comp
    joblib.dump(jobj, path(name), compress=(comp, 3))
    check(name, 'joblib', joblib.load)

# --- numpy -------------------------------------------------------------------
np.save(path('num.npy'), np.arange(12, dtype='<f8').reshape(3, 4))
check('num.npy', 'numpy', np.load)
np.save(path('obj.npy'), np.array([{'k': 1}, [1, 2]], dtype=object))
check('obj.npy', 'numpy', lambda p: np.load(p, allow_pickle=True))
for version in [(2, 0), (3, 0)]:
    name = 'num_v%d.npy' % version[0]
    with open(path(name), 'wb') as f:
        np.lib.format.write_array(f, np.arange(4, dtype='<i4'), version=version)
    check(name, 'numpy', np.load)
np.savez(path('plain.npz'), a=np.arange(3), b=np.eye(2))
check('plain.npz', 'numpy', lambda p: dict(np.load(p)))
list_zip('plain.npz')
np.savez_compressed(path('comp.npz'), a=np.arange(1000), b=np.eye(20))
check('comp.npz', 'numpy', lambda p: dict(np.load(p)))
list_zip('comp.npz')
np.savez(path('obj.npz'), o=np.array([{'k': 1}], dtype=object))
check('obj.npz', 'numpy', lambda p: dict(np.load(p, allow_pickle=True)))

# --- raw pickles -------------------------------------------------------------
obj = {'list': [1, 2.5, 'three', b'four', None, True], 'tuple': (1, 2),
       'set': {1, 2}, 'big': 2 ** 80}
for proto in range(6):
    write('p%d.pkl' % proto, pickle.dumps(obj, protocol=proto))
    check('p%d.pkl' % proto, 'pickle', lambda p: pickle.load(open(p, 'rb')))
write('stacked.pkl', pickle.dumps([1, 2], protocol=2) +
      pickle.dumps({'b': 3}, protocol=4) + pickle.dumps('x', protocol=0) +
      b'\x00\x01\x02TRAILER')
check('stacked.pkl', 'pickle', lambda p: pickle.load(open(p, 'rb')))

# --- generic archives --------------------------------------------------------
sd = read('sd_zip.pt')
with zipfile.ZipFile(path('wrap_stored.zip'), 'w', zipfile.ZIP_STORED) as z:
    z.writestr('models/model.pt', sd)
    z.writestr('README.txt', 'A plain text file.\n' * 20)
list_zip('wrap_stored.zip')
with zipfile.ZipFile(path('wrap_deflated.zip'), 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('m/model.pt', sd)
    z.writestr('m/legacy.pt', read('legacy.pt'))
    z.writestr('m/weights.npy', read('num.npy'))
    z.writestr('m/big.bin', bytes(range(256)) * 64)
list_zip('wrap_deflated.zip')
with tarfile.open(path('wrap.tar'), 'w') as t:
    t.add(path('sd_zip.pt'), arcname='ckpt/model.pt')
    t.add(path('p2.pkl'), arcname='ckpt/extra.pkl')
with tarfile.open(path('wrap.tar.gz'), 'w:gz') as t:
    t.add(path('sd_zip.pt'), arcname='model.pt')
if os.path.exists(path('wrap.7z')):
    os.remove(path('wrap.7z'))
subprocess.run(['7z', 'a', '-bso0', '-bsp0', path('wrap.7z'),
                path('sd_zip.pt'), path('plain.joblib')], check=True)
write('legacy.pt.gz', gzip.compress(read('legacy.pt'), mtime=0))
write('p4.pkl.bz2', bz2.compress(read('p4.pkl')))

# --- tolerant variants of a torch zip ----------------------------------------
folder = b'sd_zip/'


def patch_zip(data, fn):
    """Applies fn(buffer, local_offset, central_offset, name) to each entry."""
    buf = bytearray(data)
    eocd = buf.rfind(b'PK\x05\x06')
    count, = struct.unpack_from('<H', buf, eocd + 10)
    cd, = struct.unpack_from('<I', buf, eocd + 16)
    pos = cd
    for _ in range(count):
        nlen, elen, clen = struct.unpack_from('<HHH', buf, pos + 28)
        lho, = struct.unpack_from('<I', buf, pos + 42)
        name = bytes(buf[pos + 46:pos + 46 + nlen])
        fn(buf, lho, pos, name)
        pos += 46 + nlen + elen + clen
    return bytes(buf)


def bad_crc(buf, lho, cdo, name):
    if name.endswith(b'data.pkl'):
        struct.pack_into('<I', buf, lho + 14, 0x12345678)
        struct.pack_into('<I', buf, cdo + 16, 0x12345678)


write('bad_crc.pt', patch_zip(sd, bad_crc))
check('bad_crc.pt', 'torch', torch_load)
list_zip_ok = True
write('renamed.pt', sd.replace(folder, b'zz_zip/'))
check('renamed.pt', 'torch', torch_load)


def flip_flags(buf, lho, cdo, name):
    for off in (lho + 6, cdo + 8):
        flags, = struct.unpack_from('<H', buf, off)
        struct.pack_into('<H', buf, off, flags | 0x0006 | 0x0800)


write('flags.pt', patch_zip(sd, flip_flags))
check('flags.pt', 'torch', torch_load)
shutil.copy(path('sd_zip.pt'), path('extra_files.pt'))
with zipfile.ZipFile(path('extra_files.pt'), 'a') as z:
    z.writestr('sd_zip/notes.txt', 'extra text member')
    z.writestr('sd_zip/extra.pkl', pickle.dumps({'extra': 1}, protocol=2))
check('extra_files.pt', 'torch', torch_load)
list_zip('extra_files.pt')
write('prefix.pt', b'PREFIX--' * 16 + sd)
check('prefix.pt', 'torch', torch_load)
check('prefix.pt', 'zipfile', lambda p: zipfile.ZipFile(p).testzip())


def local_name_mismatch(buf, lho, cdo, name):
    if name.endswith(b'version'):
        nlen, = struct.unpack_from('<H', buf, lho + 26)
        buf[lho + 30 + nlen - 1:lho + 30 + nlen] = b'X'


write('local_name.pt', patch_zip(sd, local_name_mismatch))
check('local_name.pt', 'torch', torch_load)

# --- broken inputs -----------------------------------------------------------
for cut in [10, 100, len(sd) // 2, len(sd) - 10]:
    write('trunc_zip_%d.pt' % cut, sd[:cut])
    check('trunc_zip_%d.pt' % cut, 'torch', torch_load)
p4 = read('p4.pkl')
write('trunc.pkl', p4[:len(p4) // 2])
check('trunc.pkl', 'pickle', lambda p: pickle.load(open(p, 'rb')))
lg = read('legacy.pt')
write('trunc_legacy.pt', lg[:len(lg) // 3])
check('trunc_legacy.pt', 'torch', torch_load)
jz = read('comp_gzip.joblib')
write('trunc_gzip.joblib', jz[:len(jz) // 2])
check('trunc_gzip.joblib', 'joblib', joblib.load)
write('random.bin', random.Random(7).randbytes(4096))
write('text.txt', b'Hello, this is a plain text file, not a model.\n' * 10)


def zip_bytes(members, method=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', method) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


# High-ratio member with honest sizes, and one whose header understates it.
write('bomb_ratio.zip', zip_bytes([('a/b.bin', bytes(50 << 20))]))
lie = zip_bytes([('a/b.pkl', pickle.dumps(bytes(50 << 20), protocol=4))])


def understate(buf, lho, cdo, name):
    struct.pack_into('<I', buf, lho + 22, 100)
    struct.pack_into('<I', buf, cdo + 24, 100)


write('bomb_lie.zip', patch_zip(lie, understate))
# Nested: each level holds 10 copies of the level below.
inner = zip_bytes([('zeros.pkl', pickle.dumps(bytes(900 << 10), protocol=4))])
for level in range(3):
    inner = zip_bytes([('l%d_%d.zip' % (level, i), inner) for i in range(10)])
write('bomb_nested.zip', inner)
# Overlapping entries: two central records for one local file.
base = zip_bytes([('x.pkl', pickle.dumps(list(range(100))))],
                 zipfile.ZIP_STORED)
eocd = base.rfind(b'PK\x05\x06')
cd, = struct.unpack_from('<I', base, eocd + 16)
central = base[cd:eocd]
dup = bytearray(central)
dup[46:46 + 5] = b'y.pkl'
eocd_rec = bytearray(base[eocd:])
struct.pack_into('<HHI', eocd_rec, 8, 2, 2, len(central) * 2)
write('bomb_overlap.zip', base[:cd] + central + bytes(dup) + bytes(eocd_rec))
# Nesting deeper than the default limit (8).
deep = pickle.dumps('bottom', protocol=2)
for level in range(10):
    deep = zip_bytes([('d%d' % level, deep)])
write('deep.zip', deep)

with open(path('expectations.tsv'), 'w') as f:
    for row in expect:
        f.write('\t'.join(str(x) for x in row) + '\n')
with open(path('zip_listing.tsv'), 'w') as f:
    for row in listing:
        f.write('\t'.join(str(x) for x in row) + '\n')
with open(STAMP, 'w') as f:
    f.write(SCRIPT_HASH)
