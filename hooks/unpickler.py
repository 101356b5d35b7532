# dynahug instrumented unpickler: the Python half of hooks/unpickler_hooks.h.
#
# Compiled into the dynahug binary and run, followed by the loader drivers
# (runtime/embed/loader.py), as one piece of code in one private module
# namespace (runtime/embed/loader.cc: never imported from the file system,
# never put in sys.modules). The C bridge (hooks/unpickler_hooks.h) is
# injected as the global `_dh` before this code runs and removed from the
# namespace after it ran. Everything here is reachable by the loaded code, so
# the loader seals it (runtime/embed/loader.py says how).
#
# An instrumented unpickler built on CPython's reference pure-Python
# unpickler (pickle._Unpickler). Its dispatch table is wrapped, not replaced:
# each wrapped opcode records what it is about to do and then runs the
# original implementation, so the library sees the unpickling semantics it
# expects (joblib's own pure-Python NumpyUnpickler is instrumented the same
# way). Recorded: every global resolution (module, name, opcode offset, real
# or stub), every call made by REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST and BUILD
# with a bounded argument summary, every persistent_load id, and, in
# opcode-stepping mode, every opcode before it executes. FastUnpickler is the
# C unpickler with only globals and persistent ids recorded. Globals of
# third-party modules that are not installed resolve to inert stubs (calls
# of them are recorded with their arguments like any call); a missing
# standard-library module raises ModuleNotFoundError as it would in the
# victim's process (_stubbable).

import _codecs
import io
import pickle
import pickletools
import _pickle
import struct
import sys
import types

# proto::Event::Kind values, as the bridge exports them.
_KIND_GLOBAL = _dh.GLOBAL  # noqa: F821  (injected)
_KIND_PICKLE_CALL = _dh.PICKLE_CALL  # noqa: F821
_KIND_OPCODE = _dh.OPCODE  # noqa: F821

_MAX_VALUE = 96        # characters kept of a string argument
_MAX_ARGS = 8          # arguments summarised per call
_MAX_CALLS_PER_CALLEE = 256  # recorded with arguments; later ones counted

_PyUnpickler = pickle._Unpickler
_Stop = pickle._Stop
_Unframer = pickle._Unframer
_OPS = {op.code.encode('latin-1')[0]: op for op in pickletools.opcodes}
_CALL_OPS = ('REDUCE', 'NEWOBJ', 'NEWOBJ_EX', 'OBJ', 'INST', 'BUILD')

_emit = _dh.emit  # noqa: F821  (injected)
_set_offset = _dh.set_offset  # noqa: F821
_ident = _dh.ident  # noqa: F821
_watch = _dh.watch  # noqa: F821


class _State:
    opcodes = False          # opcode-stepping mode
    lazy_threshold = -1      # torch storages above this many bytes go
                             # to the meta device (-1: never)
    legacy = None            # torch legacy-format load through _LegacyFile:
                             # {storage key: _REAL or (meta storage, nbytes,
                             # element size)}, see _legacy_plan
    member = ''
    fast = False             # C unpickler: globals and persistent ids only


_STATE = _State()


def _trunc(s):
    return s if len(s) <= _MAX_VALUE else s[:_MAX_VALUE] + '...'


def _tname(t):
    try:
        return '%s.%s' % (t.__module__, t.__qualname__)
    except Exception:
        return '<type>'


def _summary(v):
    """Bounded description of one value; never calls payload-defined code."""
    t = type(v)
    if t is str:
        return 'str:' + _trunc(v)
    if t is bytes or t is bytearray:
        return '%s[%d]' % (t.__name__, len(v))
    if t is bool or v is None or t is float:
        return repr(v)
    if t is int:
        return repr(v) if -(1 << 63) <= v < (1 << 63) else 'int[%d bits]' % v.bit_length()
    if t is tuple or t is list or t is dict or t is set or t is frozenset:
        return '%s[%d]' % (t.__name__, len(v))
    if issubclass(t, type):
        return 'type:' + _tname(v)
    if t is types.FunctionType or t is types.BuiltinFunctionType:
        return 'function:%s.%s' % (getattr(v, '__module__', '?'),
                                   getattr(v, '__qualname__', '?'))
    return 'obj:' + _tname(t)


def _arg_pairs(args, kwargs=None):
    pairs = []
    if type(args) is tuple or type(args) is list:
        for i, a in enumerate(args[:_MAX_ARGS]):
            pairs.append((str(i), _summary(a)))
        if len(args) > _MAX_ARGS:
            pairs.append(('argc', str(len(args))))
    elif args is not None:
        pairs.append(('args', _summary(args)))
    if type(kwargs) is dict:
        for i, (k, v) in enumerate(kwargs.items()):
            if i >= _MAX_ARGS:
                pairs.append(('kwargc', str(len(kwargs))))
                break
            pairs.append(('kw:' + (_trunc(k) if type(k) is str else _summary(k)),
                          _summary(v)))
    return pairs


# --- stubs for globals of modules that are not installed --------------------

class _StubMeta(type):
    """Metaclass of the stubs. A public class attribute a stub does not have
    (an enum member such as IntervalStrategy.EPOCH, which pickles fetch with
    getattr) is an inert instance of the stub, one per name; private and
    dunder names still raise AttributeError, so library probes such as
    hasattr(cls, '_fields') see a plain class."""

    def __getattr__(cls, name):
        members = cls.__dict__.get('_dynahug_members')
        if members is None or name.startswith('_'):
            raise AttributeError(name)
        obj = members.get(name)
        if obj is None:
            obj = object.__new__(cls)
            obj.__dict__['_dynahug_member'] = name
            members[name] = obj
        return obj


class _StubBase(metaclass=_StubMeta):
    """Inert stand-in for a class or function of a module that is not
    installed: accepts any construction arguments and any state."""
    _dynahug_stub = True

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.__dict__['_dynahug_args'] = (args, kwargs)

    def __setstate__(self, state):
        self.__dict__['_dynahug_state'] = state

    def __call__(self, *args, **kwargs):
        return type(self)(*args, **kwargs)


_stubs = {}


def _stub(module, name):
    key = (module, name)
    cls = _stubs.get(key)
    if cls is None:
        cls = _StubMeta(name.rpartition('.')[2] or 'Stub', (_StubBase,),
                        {'__module__': module, '__qualname__': name,
                         '_dynahug_stub': True, '_dynahug_members': {}})
        _stubs[key] = cls
    return cls


# Top-level names of the standard library (every platform's).
_STDLIB = frozenset(sys.stdlib_module_names)


def _stubbable(module, error):
    """Whether find_class(module, ...) that raised `error` resolves to a
    stub: only when the module that is missing is `module` itself or one of
    its parent packages (not something it imports) and it is not part of the
    standard library. The complete standard library is installed
    (scripts/install-deps.sh), so a missing stdlib module is one this
    platform lacks (nt, winreg, msvcrt, _winapi...): the victim's load fails
    with the same ModuleNotFoundError, and so does this one."""
    missing = error.name or ''
    if not missing or not (module == missing or
                           module.startswith(missing + '.')):
        return False
    return missing.partition('.')[0] not in _STDLIB


def _is_stub(obj):
    return issubclass(type(obj), type) and issubclass(obj, _StubBase)


# --- position tracking and opcode stepping ----------------------------------

class _Pushback:
    """Read layer in front of the unframer that can give bytes back, so that
    stepping mode can decode an opcode's argument before the opcode runs."""
    __slots__ = ('_read', '_readline', '_readinto', 'buf')

    def __init__(self, read, readline, readinto):
        self._read, self._readline, self._readinto = read, readline, readinto
        self.buf = b''

    def read(self, n):
        if not self.buf:
            return self._read(n)
        if n <= len(self.buf):
            data, self.buf = self.buf[:n], self.buf[n:]
            return data
        data, self.buf = self.buf, b''
        return data + self._read(n - len(data))

    def readline(self):
        if not self.buf:
            return self._readline()
        i = self.buf.find(b'\n')
        if i >= 0:
            data, self.buf = self.buf[:i + 1], self.buf[i + 1:]
            return data
        data, self.buf = self.buf, b''
        return data + self._readline()

    def readinto(self, b):
        m = memoryview(b).cast('B')
        k = min(len(self.buf), len(m))
        m[:k] = self.buf[:k]
        self.buf = self.buf[k:]
        if k < len(m):
            return k + self._readinto(m[k:])
        return k


class _Capture:
    """File-like view used by pickletools' argument readers: reads through
    the pushback layer and remembers what it read."""

    def __init__(self, src):
        self.src = src
        self.data = []

    def read(self, n):
        d = self.src.read(n)
        self.data.append(d)
        return d

    def readline(self):
        d = self.src.readline()
        self.data.append(d)
        return d


# --- the instrumented unpickler ----------------------------------------------

def _callee_name(self, f):
    e = self._dh_names.get(_ident(f))
    if e is not None and e[1] is f:
        return e[0], e[2]
    if issubclass(type(f), type):
        return _tname(f), _is_stub(f)
    t = type(f)
    if t is types.FunctionType or t is types.BuiltinFunctionType:
        return '%s.%s' % (getattr(f, '__module__', None) or '?',
                          getattr(f, '__qualname__', '?')), False
    if t is types.MethodType:
        return '%s.%s' % (_tname(type(f.__self__)),
                          getattr(f.__func__, '__name__', '?')), False
    return '<%s>' % _tname(t), False


def _record_call(self, op, callee, args, kwargs=None, name=None):
    if name is None:
        name, stub = _callee_name(self, callee)
    else:
        stub = False
    seen = self._dh_calls.get(name, 0) + 1
    self._dh_calls[name] = seen
    if seen > _MAX_CALLS_PER_CALLEE:
        return
    pairs = [('op', op)]
    if stub:
        pairs.append(('stub', 'true'))
    pairs.extend(_arg_pairs(args, kwargs))
    _emit(_KIND_PICKLE_CALL, name, tuple(pairs), self._dh_pos, 1,
          _STATE.member)


def _w_reduce(orig):
    def load_reduce(self):
        st = self.stack
        _record_call(self, 'REDUCE', st[-2], st[-1])
        orig(self)
    return load_reduce


def _w_newobj(orig):
    def load_newobj(self):
        st = self.stack
        _record_call(self, 'NEWOBJ', st[-2], st[-1])
        orig(self)
    return load_newobj


def _w_newobj_ex(orig):
    def load_newobj_ex(self):
        st = self.stack
        _record_call(self, 'NEWOBJ_EX', st[-3], st[-2], st[-1])
        orig(self)
    return load_newobj_ex


def _w_obj(orig):
    def load_obj(self):
        st = self.stack
        if st:
            _record_call(self, 'OBJ', st[0], st[1:])
        orig(self)
    return load_obj


def _w_inst(orig):
    def load_inst(self):
        self._dh_inst = True
        try:
            orig(self)
        finally:
            self._dh_inst = False
    return load_inst


def _w_build(orig):
    def load_build(self):
        st = self.stack
        inst = st[-2]
        t = type(inst)
        how = '__setstate__' if getattr(t, '__setstate__', None) is not None else '__dict__'
        state = st[-1]
        if type(state) is dict:
            _record_call(self, 'BUILD', None, None, state,
                         name='%s.%s' % (_tname(t), how))
        else:
            _record_call(self, 'BUILD', None, (state,),
                         name='%s.%s' % (_tname(t), how))
        orig(self)
    return load_build


def _w_frame(orig):
    def load_frame(self):
        orig(self)
        cf = self._unframer.current_frame
        if cf is not None:
            end = cf.seek(0, 2)
            cf.seek(0)
            self._dh_frame_base = self._dh_file_pos() - end
    return load_frame


_WRAPPERS = {
    pickle.REDUCE[0]: _w_reduce,
    pickle.NEWOBJ[0]: _w_newobj,
    pickle.NEWOBJ_EX[0]: _w_newobj_ex,
    pickle.OBJ[0]: _w_obj,
    pickle.INST[0]: _w_inst,
    pickle.BUILD[0]: _w_build,
    pickle.FRAME[0]: _w_frame,
}


def _instrument_dispatch(dispatch):
    d = dict(dispatch)
    for code, wrap in _WRAPPERS.items():
        if code in d:
            d[code] = wrap(d[code])
    return d


_ELEMENT_SIZE = {}


def _element_size(torch, dtype):
    size = _ELEMENT_SIZE.get(dtype)
    if size is None:
        # C calls only: invisible to the call profiler, unlike
        # torch._utils._element_size.
        size = _ELEMENT_SIZE[dtype] = torch.empty((), dtype=dtype,
                                                  device='meta').element_size()
    return size


def _meta_storage(torch, nbytes, dtype):
    return torch.storage.TypedStorage(
        wrap_storage=torch.UntypedStorage(nbytes, device='meta'), dtype=dtype)


def _lazy_storage(self, pid):
    # torch zip format: ('storage', storage_type, key, location, numel).
    if (_STATE.lazy_threshold < 0 or type(pid) is not tuple or len(pid) != 5
            or pid[0] not in ('storage', b'storage')):
        return None
    torch = sys.modules.get('torch')
    if torch is None:
        return None
    storage_type, key, _location, numel = pid[1:]
    if type(numel) is not int:
        return None
    if storage_type is torch.UntypedStorage:
        dtype = torch.uint8
    else:
        dtype = getattr(storage_type, 'dtype', None)
        if dtype is None:
            return None
    nbytes = numel * _element_size(torch, dtype)
    if nbytes <= _STATE.lazy_threshold:
        return None
    cached = self._dh_meta.get(key)
    if cached is None:
        cached = _meta_storage(torch, nbytes, dtype)
        self._dh_meta[key] = cached
    return cached


# --- torch's legacy (non-zip) format -----------------------------------------
#
# A legacy file is five pickles (magic number, protocol version, sys_info, the
# object, the list of storage keys) followed by the storages' bytes, each
# preceded by its int64 element count. torch 1.13's _legacy_load allocates
# every storage in persistent_load, during the object pickle, and fills them
# after the key list, in its order. The torch driver (runtime/embed/
# loader.py) reads such a file through _LegacyFile; then a storage above the
# lazy threshold is created on the meta device here instead of by torch
# (_legacy_plan, _legacy_storage), and the key list handed back to torch
# (_StorageKeys) leaves such storages out: their bytes are skipped, not read,
# with the checks torch would make (_skip_storage). Smaller storages are
# allocated and read by torch itself. Every pickle, the key list included,
# runs through the instrumented unpickler.

_REAL = object()  # a key whose storage torch allocated (or will)
_KEY_TYPES = (str, bytes, int, bool)


def _ascii_ok(location):
    if type(location) is not bytes:
        return True
    try:
        location.decode('ascii')
    except UnicodeDecodeError:
        return False
    return True


def _legacy_plan(pid):
    """Whether this persistent id of a legacy file is served on the meta
    device by _legacy_storage (else torch's persistent_load serves it).
    pid: ('storage', storage_type, root_key, location, numel, view_metadata).
    A root storage is lazy when the first id naming it declares more than
    the threshold in bytes (torch allocates a root at its first id too);
    every later id naming a lazy root, or a view created from one, is served
    by _legacy_storage. Runs no code of the file: anything but torch's own
    StorageType, an int element count and a str key goes to torch."""
    legacy = _STATE.legacy
    if (legacy is None or _STATE.lazy_threshold < 0 or type(pid) is not tuple
            or len(pid) != 6 or pid[0] not in ('storage', b'storage')):
        return False
    storage_type, root_key, location, numel, view_metadata = pid[1:]
    if type(root_key) not in _KEY_TYPES:
        return False
    view_key = None
    if (type(view_metadata) is tuple and len(view_metadata) == 3
            and type(view_metadata[0]) in _KEY_TYPES):
        view_key = view_metadata[0]
    entry = legacy.get(root_key)
    if entry is None:
        entry = _REAL
        torch = sys.modules.get('torch')
        ser = sys.modules.get('torch.serialization')
        if (torch is not None and ser is not None
                and type(storage_type) is ser.StorageType
                and type(numel) is int and _ascii_ok(location)):
            dtype = storage_type.__dict__.get('dtype')
            if type(dtype) is torch.dtype:
                esize = _element_size(torch, dtype)
                nbytes = numel * esize
                if nbytes > _STATE.lazy_threshold:
                    entry = (_meta_storage(torch, nbytes, dtype), nbytes, esize)
        legacy[root_key] = entry
        if entry is _REAL:
            if view_key is not None and view_key not in legacy:
                legacy[view_key] = _REAL
            return False
        return True
    if entry is not _REAL:
        return True
    if view_key is None:
        return False
    view = legacy.get(view_key)
    if view is None:
        legacy[view_key] = _REAL  # torch slices the root it allocated
        return False
    return view is not _REAL


def _legacy_storage(pid, fn):
    """torch 1.13's legacy persistent_load ('storage' branch), step by step,
    for an id _legacy_plan made lazy: the same attribute reads, arithmetic
    and exceptions, but the root is the meta storage _legacy_plan created
    and a view is a meta storage of the length torch's slice would have
    (meta storages cannot be sliced). A key that names a storage torch
    allocated is fetched from torch's persistent_load."""
    torch = sys.modules['torch']
    legacy = _STATE.legacy
    storage_type, root_key, location, numel, view_metadata = pid[1:]
    if type(location) is bytes:
        location = location.decode('ascii')
    dtype = storage_type.dtype
    esize = _element_size(torch, dtype) if type(dtype) is torch.dtype else \
        torch._utils._element_size(dtype)  # raises as torch's does
    nbytes = numel * esize
    del nbytes
    typed_storage = legacy[root_key]
    if view_metadata is not None:
        view_key, offset, view_size = view_metadata
        offset_bytes = offset * esize
        view_size_bytes = view_size * esize
        if view_key not in legacy:
            n = len(range(typed_storage[1])[offset_bytes:
                                             offset_bytes + view_size_bytes])
            legacy[view_key] = (_meta_storage(torch, n, dtype), n, esize)
        res = legacy[view_key]
        if res is _REAL:
            return fn((pid[0], storage_type, view_key, location, 0, None))
    else:
        res = typed_storage
    return res[0]


def _int64(v):
    return ((v + (1 << 63)) & ((1 << 64) - 1)) - (1 << 63)


def _skip_storage(f, nbytes, esize):
    """Moves `f` past one storage's record (int64 element count, then the
    bytes) without reading the bytes, failing as torch's
    UntypedStorage._set_from_file does on a short file or a count that does
    not match the storage (same messages)."""
    head = f.read(8)
    if len(head) < 8:
        raise RuntimeError('unexpected EOF, expected %d more bytes. The file '
                           'might be corrupted.' % (8 - len(head)))
    got = _int64(int.from_bytes(head, 'little', signed=True) * esize)
    if got != nbytes:
        # torch formats this message with "%ld" left in and both numbers
        # appended.
        raise RuntimeError('storage has wrong byte size: expected %ld got %ld'
                           + str(got) + str(nbytes))
    pos = f.tell()
    end = f.seek(0, 2)
    if end - pos < nbytes:
        raise RuntimeError('unexpected EOF, expected %d more bytes. The file '
                           'might be corrupted.' % (nbytes - (end - pos)))
    f.seek(pos + nbytes)


class _StorageKeys:
    """The storage-key list of a legacy file as torch's read loop iterates
    it: keys of lazy storages are not handed out, their records are skipped
    in the file at the point torch would have read them."""
    __slots__ = ('keys', 'file')

    def __init__(self, keys, file):
        self.keys, self.file = keys, file

    def __iter__(self):
        legacy = _STATE.legacy
        for key in self.keys:
            entry = legacy.get(key) if type(key) in _KEY_TYPES else None
            if entry is None or entry is _REAL:
                yield key
            else:
                _skip_storage(self.file, entry[1], entry[2])


class _LegacyFile:
    """The open legacy file as torch.load sees it: the file's own read,
    readinto, readline, seek and tell, and no fileno(), so that torch reads
    the storages through these methods, in order (no offsets of its own),
    and _StorageKeys can skip some."""
    __slots__ = ('read', 'readinto', 'readline', 'seek', 'tell', 'peek')

    def __init__(self, f):
        self.read, self.readinto, self.readline = f.read, f.readinto, f.readline
        self.seek, self.tell, self.peek = f.seek, f.tell, f.peek


def _record_persistent(self, pid, fn):
    pairs = [('op', 'PERSID')]
    if type(pid) is tuple:
        pairs.extend(_arg_pairs(pid))
    else:
        pairs.append(('id', _summary(pid)))
    lazy = _lazy_storage(self, pid)
    legacy = lazy is None and _legacy_plan(pid)
    if lazy is not None or legacy:
        pairs.append(('lazy', 'meta'))
    _emit(_KIND_PICKLE_CALL, 'persistent_load', tuple(pairs),
          self._dh_pos, 1, _STATE.member)
    if lazy is not None:
        return lazy
    if legacy:
        return _legacy_storage(pid, fn)
    return fn(pid)


def _record_global(self, module, name, obj):
    stub = _is_stub(obj)
    if type(module) is str and type(name) is str:
        qual = '%s.%s' % (module, name)
    else:
        qual = '%s.%s' % (_summary(module), _summary(name))
    names = self.__dict__.get('_dh_names')
    if names is not None:
        names[_ident(obj)] = (qual, obj, stub)
    _emit(_KIND_GLOBAL, qual,
          (('module', _trunc(module) if type(module) is str else _summary(module)),
           ('name', _trunc(name) if type(name) is str else _summary(name)),
           ('resolved', 'stub' if stub else 'real'),
           ('type', _tname(type(obj)))),
          self._dh_pos, 1, _STATE.member)


class _Instrumentation:
    """Mixin placed before a pure-Python unpickler class."""

    # torch assigns unpickler.persistent_load = fn; this property keeps the
    # assignment and interposes the recording wrapper.
    @property
    def persistent_load(self):
        return self._dh_persistent_load

    @persistent_load.setter
    def persistent_load(self, fn):
        self.__dict__['_dh_user_persistent_load'] = fn

    def _dh_persistent_load(self, pid):
        fn = self.__dict__.get('_dh_user_persistent_load')
        if fn is None:
            fn = super().persistent_load
        return _record_persistent(self, pid, fn)

    def find_class(self, module, name):
        try:
            return super().find_class(module, name)
        except ModuleNotFoundError as e:
            if not _stubbable(module, e):
                raise
            return _stub(module, name)

    def _instantiate(self, klass, args):
        if getattr(self, '_dh_inst', False):
            _record_call(self, 'INST', klass, args)
        return super()._instantiate(klass, args)

    def _dh_file_pos(self):
        if self._dh_tell is not None:
            return self._dh_tell()
        return self._dh_count

    def _dh_tell_op(self):
        cf = self._unframer.current_frame
        pb = len(self._dh_pb.buf) if self._dh_pb is not None else 0
        if cf is not None:
            return self._dh_frame_base + cf.tell() - pb
        return self._dh_file_pos() - pb

    def _dh_find_recording(self, find, module, name):
        pos = self._dh_pos
        obj = find(module, name)
        self._dh_pos = pos
        _record_global(self, module, name, obj)
        return obj

    def load(self):
        if not hasattr(self, '_file_read'):
            raise pickle.UnpicklingError(
                'Unpickler.__init__() was not called by %s.__init__()'
                % (self.__class__.__name__,))
        # Position of the underlying file: its tell() when it has one (joblib
        # reads array bytes from the file directly), else a byte count.
        fobj = getattr(self._file_read, '__self__', None)
        tell = getattr(fobj, 'tell', None)
        try:
            base = tell() if tell is not None else None
        except Exception:
            tell, base = None, None
        self._dh_tell = tell
        self._dh_count = 0
        if tell is None:
            raw_read, raw_readline = self._file_read, self._file_readline

            def counting_read(n):
                d = raw_read(n)
                self._dh_count += len(d)
                return d

            def counting_readline():
                d = raw_readline()
                self._dh_count += len(d)
                return d
            self._file_read, self._file_readline = counting_read, counting_readline
        del base
        self._dh_names = {}
        self._dh_calls = {}
        self._dh_meta = {}
        self._dh_pos = -1
        self._dh_frame_base = 0
        self._dh_inst = False
        self._dh_pb = None
        cls_find = self.find_class
        self.find_class = lambda m, n: self._dh_find_recording(cls_find, m, n)
        _watch(self)

        self._unframer = _Unframer(self._file_read, self._file_readline)
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        stepping = _STATE.opcodes
        if stepping:
            pb = _Pushback(self.read, self.readline, self.readinto)
            self._dh_pb = pb
            self.read, self.readline, self.readinto = pb.read, pb.readline, pb.readinto
        self.metastack = []
        self.stack = []
        self.append = self.stack.append
        self.proto = 0
        read = self.read
        dispatch = self.dispatch
        tell_op = self._dh_tell_op
        try:
            while True:
                pos = tell_op()
                self._dh_pos = pos
                _set_offset(pos)
                key = read(1)
                if not key:
                    raise EOFError
                if stepping:
                    self._dh_step(key[0], pos)
                dispatch[key[0]](self)
        except _Stop as stopinst:
            return stopinst.value
        finally:
            _set_offset(-1)
            for name, n in self._dh_calls.items():
                if n > _MAX_CALLS_PER_CALLEE:
                    _emit(_KIND_PICKLE_CALL, name, (('op', 'more'),), -1,
                          n - _MAX_CALLS_PER_CALLEE, _STATE.member)

    def _dh_step(self, code, pos):
        op = _OPS.get(code)
        if op is None:
            _emit(_KIND_OPCODE, '<unknown 0x%02x>' % code, (), pos, 1,
                  _STATE.member)
            return
        pairs = ()
        if op.arg is not None:
            cap = _Capture(self._dh_pb)
            try:
                arg = _ARG_READERS.get(op.name, op.arg.reader)(cap)
                pairs = (('arg', _summary(arg)),)
            except Exception as e:
                pairs = (('arg', '<unreadable: %s>' % type(e).__name__),)
            self._dh_pb.buf = b''.join(cap.data) + self._dh_pb.buf
        _emit(_KIND_OPCODE, op.name, pairs, pos, 1, _STATE.member)


def _read_unicodestringnl(f):
    """pickletools.read_unicodestringnl without the codec lookup: its
    str(data, 'raw-unicode-escape') imports encodings.raw_unicode_escape on
    first use, which would put that import before the OPCODE event of the
    UNICODE opcode it belongs to (the real load_unicode makes it, after)."""
    data = f.readline()
    if not data.endswith(b'\n'):
        raise ValueError('no newline found when trying to read '
                         'unicodestringnl')
    return _codecs.raw_unicode_escape_decode(data[:-1])[0]


# Argument readers used in stepping mode instead of pickletools' own.
_ARG_READERS = {'UNICODE': _read_unicodestringnl}


class Unpickler(_Instrumentation, _PyUnpickler):
    dispatch = _instrument_dispatch(_PyUnpickler.dispatch)


class FastUnpickler(_pickle.Unpickler):
    """The C unpickler with find_class and persistent_load recorded: no
    per-call or per-opcode events and no offsets, at C speed. Calls are
    still visible to the audit hook and the call profiler."""

    _dh_pos = -1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Recorded at the outermost find_class (torch's wrapper resolves
        # storage types itself without calling ours); the C unpickler looks
        # find_class up on the instance.
        cls_find = self.find_class

        def find_class(module, name):
            obj = cls_find(module, name)
            _record_global(self, module, name, obj)
            return obj
        self.find_class = find_class
        _watch(self)

    @property
    def persistent_load(self):
        # Read once by the C unpickler's __init__: every persistent id goes
        # through the recording method, which forwards to what was assigned.
        return self._dh_persistent_load

    @persistent_load.setter
    def persistent_load(self, fn):
        self.__dict__['_dh_user_persistent_load'] = fn

    def _dh_persistent_load(self, pid):
        fn = self.__dict__.get('_dh_user_persistent_load')
        if fn is None:
            def fn(pid):
                raise pickle.UnpicklingError(
                    'A load persistent id instruction was encountered, '
                    'but no persistent_load function was specified.')
        if '_dh_meta' not in self.__dict__:
            self.__dict__['_dh_meta'] = {}
        return _record_persistent(self, pid, fn)

    def find_class(self, module, name):
        try:
            obj = super().find_class(module, name)
        except ModuleNotFoundError as e:
            if not _stubbable(module, e):
                raise
            obj = _stub(module, name)
        return obj


def load(file, *, fix_imports=True, encoding='ASCII', errors='strict',
         buffers=None):
    cls = FastUnpickler if _STATE.fast and not _STATE.opcodes else Unpickler
    value = cls(file, fix_imports=fix_imports, encoding=encoding,
                errors=errors, buffers=buffers).load()
    if _STATE.legacy and type(file) is _LegacyFile and type(value) is list:
        # The storage-key list (the only pickle torch's legacy loader reads
        # with load() after the object): see _StorageKeys.
        return _StorageKeys(value, file)
    return value


def loads(data, /, *, fix_imports=True, encoding='ASCII', errors='strict',
          buffers=None):
    if isinstance(data, str):
        raise TypeError("Can't load pickle from unicode string")
    return load(io.BytesIO(data), fix_imports=fix_imports, encoding=encoding,
                errors=errors, buffers=buffers)


def _make_pickle_module(unpickler):
    m = types.ModuleType('dynahug_pickle')
    for k in dir(pickle):
        if not k.startswith('__'):
            setattr(m, k, getattr(pickle, k))
    m.Unpickler = unpickler
    m._Unpickler = Unpickler
    m.load = load
    m.loads = loads
    return m


pickle_module = _make_pickle_module(Unpickler)
fast_pickle_module = _make_pickle_module(FastUnpickler)


def _module():
    return fast_pickle_module if _STATE.fast and not _STATE.opcodes else pickle_module
_joblib_unpickler = None


def _joblib_class():
    global _joblib_unpickler
    if _joblib_unpickler is None:
        import joblib.numpy_pickle as jnp

        class NumpyUnpickler(_Instrumentation, jnp.NumpyUnpickler):
            dispatch = _instrument_dispatch(jnp.NumpyUnpickler.dispatch)
        _joblib_unpickler = NumpyUnpickler
    return _joblib_unpickler
