# dynahug value digest: one hash of what a load returned, so that a sandboxed
# load can be compared with a plain load of the same file.
#
# One source, two users: compiled into the dynahug binary and run in the
# sandboxed child right after the load (runtime/embed/loader.cc, in the
# loader's namespace), and run by plain /usr/bin/python3 in the differential
# test (tests/integration/value_digest_test.cc via plain_load_digest.py),
# which loads benign files with the real library loader and compares.
#
# value_digest(value, lazy_threshold) -> "sha256:<64 hex> nodes=N bytes=B"
# (" truncated" appended when a bound was hit). The hash covers, depth first
# in a fixed order:
#   - None, bool, int, float (bit exact), complex, str, bytes, bytearray;
#   - tuple, list, dict (insertion order), set and frozenset (order
#     independent: sorted element hashes); for subclasses also the type name
#     and the instance __dict__;
#   - torch tensors: type, dtype, shape, stride, storage offset,
#     requires_grad, and the bytes of the whole storage, each storage hashed
#     once (views share it). A storage of more than `lazy_threshold` bytes
#     (>= 0) is covered by its size only: dynahug loads such torch storages
#     on the meta device (LoadOptions::lazy_storage_bytes), so neither side
#     hashes their bytes. A meta storage at or under the threshold hashes as
#     "meta", which differs from a plain load's bytes;
#   - numpy arrays and scalars: dtype, shape and contents (object arrays
#     element by element);
#   - numpy .npz files (NpzFile): the dict of their members' values, read
#     from the open file, or given as `npz_members` (the sandbox's numpy
#     driver reads every member during the load and closes the file);
#   - classes, functions and modules: their qualified names;
#   - other objects: qualified type name, then what pickling them would save
#     (__reduce_ex__(4): arguments, state, items; attribute dicts by sorted
#     name, since attribute order may follow hash-randomised set order)
#     when every method pickling
#     would call is built in or comes from a library package (LIBRARIES),
#     else their instance __dict__ and __slots__ values only (no code of the
#     file runs here: a class the file defined cannot run a method of its
#     own, except __torch_function__ and __array__-style hooks, which are
#     disabled or not called).
# Shared objects are hashed once and referenced by their first position
# after that (cycles end). Bounds: MAX_NODES objects, MAX_DEPTH nesting,
# MAX_BYTES of array/tensor contents; past a bound the rest is covered by
# type and size only and the digest says "truncated".
#
# Deterministic across processes: no id(), hash() or set order reaches the
# hash.

import hashlib as _vd_hashlib
import sys as _vd_sys

VALUE_DIGEST_MAX_NODES = 200000
VALUE_DIGEST_MAX_DEPTH = 100
VALUE_DIGEST_MAX_BYTES = 64 << 20
VALUE_DIGEST_LIBRARIES = frozenset((
    'builtins', 'collections', 'copyreg', 'datetime', 'decimal', 'fractions',
    'enum', 'functools', 'pathlib', 'uuid', 're', 'abc', 'typing', 'numpy',
    'torch',
    'joblib', 'sklearn', 'pandas', 'scipy', 'xgboost'))
# What object.__reduce_ex__ may call, and attribute lookup itself.
_VD_PICKLE_METHODS = ('__reduce_ex__', '__reduce__', '__getstate__',
                      '__getnewargs_ex__', '__getnewargs__', '__getattribute__',
                      '__getattr__')
_VD_NAMED = (type(len), type(_vd_sys), type(lambda: 0), type(str.join),
             type(object.__init__), type(dict.__dict__['fromkeys']))
_vd_type_dict = type.__dict__['__dict__'].__get__
_vd_type_mro = type.__dict__['__mro__'].__get__
_vd_type_qualname = type.__dict__['__qualname__'].__get__
_vd_type_module = type.__dict__['__module__'].__get__
_VD_PRIMITIVES = (type(None), bool, int, float, complex, str, bytes,
                  bytearray)


def _vd_qualname(obj):
    try:
        module = object.__getattribute__(obj, '__module__')
    except Exception:
        module = None
    try:
        qual = object.__getattribute__(obj, '__qualname__')
    except Exception:
        try:
            qual = object.__getattribute__(obj, '__name__')
        except Exception:
            qual = '?'
    if not isinstance(module, str):
        module = '?'
    if not isinstance(qual, str):
        qual = '?'
    return module + '.' + qual


def _vd_type_name(t):
    """'module.QualName' of a class, read without running code of it."""
    module = _vd_type_module(t)
    return '%s.%s' % (module if type(module) is str else '?',
                      _vd_type_qualname(t))


def _vd_library(module):
    return type(module) is str and \
        module.split('.')[0] in VALUE_DIGEST_LIBRARIES


def _vd_trusted_method(t, name):
    """Whether the method `name` that class `t` resolves to is built in or
    comes from a library package (looked up without running code)."""
    for klass in _vd_type_mro(t):
        d = _vd_type_dict(klass)
        if name not in d:
            continue
        f = d[name]
        if type(f) in (staticmethod, classmethod):
            f = f.__func__
        if type(f) is type(_vd_library):
            return _vd_library(f.__module__)
        kind = _vd_type_module(type(f))
        if type(kind) is str and kind.startswith('_cython_'):
            # A compiled library's method (cython_function_or_method).
            return _vd_library(getattr(f, '__module__', None))
        return kind == 'builtins' or _vd_library(kind)
    return True


def _vd_reducible(t):
    """Whether pickling an instance of `t` runs library code only."""
    meta = type(t)
    if meta is not type and not _vd_library(_vd_type_module(meta)):
        return False
    return all(_vd_trusted_method(t, m) for m in _VD_PICKLE_METHODS)


class _VdWalker:
    def __init__(self, lazy_threshold, npz_members=None):
        self.npz_members = npz_members
        self.h = _vd_hashlib.sha256()
        self.lazy = lazy_threshold
        self.nodes = 0
        self.bytes = 0
        self.truncated = False
        self.memo = {}      # id -> position of first visit
        self.keep = []      # visited objects stay alive (ids stay unique)
        self.storages = {}  # (data_ptr, nbytes) -> position
        self.torch = _vd_sys.modules.get('torch')
        self.numpy = _vd_sys.modules.get('numpy')

    def token(self, tag, data=b''):
        if isinstance(data, str):
            data = data.encode('utf-8', 'surrogatepass')
        self.h.update(b'%s %d:' % (tag, len(data)))
        self.h.update(data)

    def contents(self, tag, buffer, size):
        """Hashes `size` bytes of array contents (a buffer) within
        MAX_BYTES."""
        if self.bytes + size > VALUE_DIGEST_MAX_BYTES:
            self.truncated = True
            self.token(b'over-budget', str(size))
            return
        self.bytes += size
        self.token(tag, str(size))
        self.h.update(buffer)

    def walk(self, v, depth):
        self.nodes += 1
        if self.nodes > VALUE_DIGEST_MAX_NODES:
            self.truncated = True
            self.token(b'...')
            return
        t = type(v)
        if t in _VD_PRIMITIVES:
            self.primitive(v, t)
            return
        key = id(v)
        if key in self.memo:
            self.token(b'ref', str(self.memo[key]))
            return
        self.memo[key] = len(self.memo)
        self.keep.append(v)
        if depth > VALUE_DIGEST_MAX_DEPTH:
            self.truncated = True
            self.token(b'deep', _vd_type_name(t))
            return
        if issubclass(t, type):
            self.token(b'type', _vd_type_name(v))
            return
        if t in _VD_NAMED:
            self.token(b'named', '%s %s' % (_vd_type_name(t), _vd_qualname(v)))
            return
        for base in _VD_PRIMITIVES:
            if issubclass(t, base):
                self.token(b'subclass', _vd_type_name(t))
                self.primitive(v, base)
                self.instance_dict(v, depth)
                return
        if issubclass(t, (tuple, list)):
            base = tuple if issubclass(t, tuple) else list
            self.token(b'seq', _vd_type_name(t))
            items = base.__iter__(v)
            self.token(b'len', str(base.__len__(v)))
            for item in items:
                self.walk(item, depth + 1)
            if t is not base:
                self.instance_dict(v, depth)
            return
        if issubclass(t, dict):
            self.token(b'dict', _vd_type_name(t))
            self.token(b'len', str(dict.__len__(v)))
            for k, item in dict.items(v):
                self.walk(k, depth + 1)
                self.walk(item, depth + 1)
            if t is not dict:
                self.instance_dict(v, depth)
            return
        if issubclass(t, (set, frozenset)):
            self.token(b'set', _vd_type_name(t))
            base = set if issubclass(t, set) else frozenset
            self.unordered(list(base.__iter__(v)), depth)
            if t is not base:
                self.instance_dict(v, depth)
            return
        torch, numpy = self.torch, self.numpy
        if torch is not None and issubclass(t, torch.Tensor):
            self.tensor(v, t, depth)
            return
        if torch is not None and t in (torch.storage.TypedStorage,
                                       torch.UntypedStorage):
            self.token(b'storage', _vd_type_name(t))
            self.storage(v if t is torch.UntypedStorage else v.untyped())
            return
        npyio = _vd_sys.modules.get('numpy.lib.npyio')
        if npyio is not None and t is npyio.NpzFile:
            self.token(b'npz', _vd_type_name(t))
            members = self.npz_members
            if members is None or depth != 0:
                members = {k: v[k] for k in v.files}
            self.walk(members, depth + 1)
            return
        if numpy is not None:
            if issubclass(t, numpy.ndarray):
                self.array(v, t, depth)
                return
            if issubclass(t, numpy.generic) and _vd_library(
                    _vd_type_module(t)):
                self.token(b'npscalar', '%s %s' % (_vd_type_name(t),
                                                   v.dtype.str))
                if v.dtype.hasobject:
                    self.walk(v.item(), depth + 1)
                else:
                    self.contents(b'bytes', v.tobytes(), v.nbytes)
                return
            if issubclass(t, numpy.dtype) and _vd_library(
                    _vd_type_module(t)):
                self.token(b'dtype', '%s %s' % (v.str, v.descr))
                return
        self.obj(v, t, depth)

    def primitive(self, v, t):
        if t is type(None):
            self.token(b'None')
        elif t is bool:
            self.token(b'bool', b'1' if v else b'0')
        elif t is int:
            n = (int.bit_length(v) + 8) // 8
            self.token(b'int', int.to_bytes(v, n, 'little', signed=True))
        elif t is float:
            self.token(b'float', float.hex(v))
        elif t is complex:
            self.token(b'complex', '%s %s' % (float.hex(complex.real.__get__(v)),
                                              float.hex(complex.imag.__get__(v))))
        elif t is str:
            self.token(b'str', str.encode(v, 'utf-8', 'surrogatepass'))
        else:
            self.token(b'bytes', bytes(v))

    def state(self, s, depth):
        """Pickled state: an attribute dict, or (dict, slots dict)."""
        if type(s) is dict:
            self.attrs(s, depth)
        elif type(s) is tuple and len(s) == 2 and \
                all(x is None or type(x) is dict for x in s):
            self.token(b'state2')
            for x in s:
                if x is None:
                    self.token(b'None')
                else:
                    self.attrs(x, depth)
        else:
            self.walk(s, depth)

    def unordered(self, items, depth):
        hashes = []
        for item in items[:VALUE_DIGEST_MAX_NODES]:
            sub = _VdWalker(self.lazy)
            sub.nodes = self.nodes
            sub.bytes = self.bytes
            sub.walk(item, depth + 1)
            self.nodes = sub.nodes
            self.bytes = sub.bytes
            self.truncated = self.truncated or sub.truncated
            hashes.append(sub.h.digest())
        hashes.sort()
        self.token(b'len', str(len(hashes)))
        for d in hashes:
            self.token(b'elem', d)

    def instance_dict(self, v, depth):
        try:
            d = object.__getattribute__(v, '__dict__')
        except Exception:
            return
        if type(d) is dict and d:
            self.token(b'__dict__')
            self.attrs(d, depth + 1)

    def attrs(self, d, depth):
        """An attribute dict: by sorted name, since the order attributes
        were set in may follow set iteration (hash-randomised per process;
        pandas sets its metadata so)."""
        if not all(type(k) is str for k in dict.keys(d)):
            self.walk(d, depth)
            return
        self.nodes += 1
        self.token(b'attrs', str(dict.__len__(d)))
        for k in sorted(dict.keys(d)):
            self.token(b'str', str.encode(k, 'utf-8', 'surrogatepass'))
            self.walk(dict.__getitem__(d, k), depth + 1)

    def slots(self, v, t, depth):
        values = []
        for klass in type.__dict__['__mro__'].__get__(t):
            names = type.__dict__['__dict__'].__get__(klass).get('__slots__', ())
            if isinstance(names, str):
                names = (names,)
            if not isinstance(names, (tuple, list)):
                continue
            for n in names:
                if not isinstance(n, str) or n in ('__dict__', '__weakref__'):
                    continue
                descr = type.__dict__['__dict__'].__get__(klass).get(n)
                if type(descr).__name__ != 'member_descriptor':
                    continue
                try:
                    values.append((n, descr.__get__(v)))
                except AttributeError:
                    values.append((n, None))
        if values:
            self.token(b'slots', str(len(values)))
            for n, value in values:
                self.token(b'slot', n)
                self.walk(value, depth + 1)

    def storage(self, u):
        nbytes = u.nbytes()
        key = (u.data_ptr(), nbytes, u.device.type)
        if key in self.storages:
            self.token(b'shared-storage', str(self.storages[key]))
            return
        self.storages[key] = len(self.storages)
        if 0 <= self.lazy < nbytes:
            self.token(b'lazy-storage', str(nbytes))
            return
        if u.device.type == 'meta':
            self.token(b'meta-storage', str(nbytes))
            return
        torch = self.torch
        as_bytes = torch.empty(0, dtype=torch.uint8).set_(u)
        self.contents(b'storage', as_bytes.numpy().data if nbytes else b'',
                      nbytes)

    def tensor(self, v, t, depth):
        torch = self.torch
        T = torch.Tensor
        with torch._C.DisableTorchFunction():
            # Read through the base class's descriptors: a subclass cannot
            # run code of its own here.
            layout = T.layout.__get__(v)
            strided = layout == torch.strided
            quantized = T.is_quantized.__get__(v)
            self.token(b'tensor', '%s %s %s %s %d %d' % (
                _vd_type_name(t), T.dtype.__get__(v), tuple(T.size(v)),
                tuple(T.stride(v)) if strided else (),
                T.storage_offset(v) if strided else 0,
                bool(T.requires_grad.__get__(v))))
            if not strided or quantized:
                self.token(b'tensor-layout', str(layout))
                return
            self.storage(T.storage(v).untyped())
        self.instance_dict(v, depth)

    def array(self, v, t, depth):
        A = self.numpy.ndarray
        dtype = A.dtype.__get__(v)
        self.token(b'ndarray', '%s %s %s %s' % (
            _vd_type_name(t), dtype.str, dtype.descr, A.shape.__get__(v)))
        plain = v if t is A else A.view(v, A)
        if dtype.hasobject:
            for item in A.tolist(A.reshape(plain, -1)):
                self.walk(item, depth + 1)
        else:
            c = self.numpy.ascontiguousarray(plain)
            # As bytes: some dtypes (datetime64) export no buffer.
            raw = A.view(A.reshape(c, -1), self.numpy.uint8)
            self.contents(b'array', raw.data if c.nbytes else b'', c.nbytes)
        if t is not A:
            self.instance_dict(v, depth)

    def obj(self, v, t, depth):
        self.token(b'object', _vd_type_name(t))
        if _vd_reducible(t):
            try:
                rv = v.__reduce_ex__(4)
            except Exception as e:
                self.token(b'unreducible', _vd_type_name(type(e)))
                rv = None
            if isinstance(rv, str):
                self.token(b'global', rv)
                return
            if isinstance(rv, tuple) and len(rv) >= 2:
                self.token(b'reduce', str(len(rv)))
                self.walk(rv[0], depth + 1)
                self.walk(rv[1], depth + 1)
                if len(rv) > 2:
                    self.state(rv[2], depth + 1)
                for it in rv[3:5]:
                    items = []
                    if it is not None:
                        for item in it:
                            items.append(item)
                            if len(items) > VALUE_DIGEST_MAX_NODES:
                                self.truncated = True
                                break
                    self.walk(items, depth + 1)
                return
        self.token(b'custom-reduce')
        self.instance_dict(v, depth)
        self.slots(v, t, depth)


def value_digest(value, lazy_threshold=-1, npz_members=None):
    """Digest of `value` (see the file comment)."""
    w = _VdWalker(lazy_threshold, npz_members)
    w.walk(value, 0)
    out = 'sha256:%s nodes=%d bytes=%d' % (w.h.hexdigest(), w.nodes, w.bytes)
    return out + ' truncated' if w.truncated else out
