# dynahug loader drivers: the Python half of runtime/embed/loader.cc.
#
# Compiled into the dynahug binary and run right after the instrumented
# unpickler (hooks/unpickler.py), as one piece of code in one private module
# namespace: the names defined there (load, _module, _joblib_class, _STATE,
# _StubBase, _tname) are used here. Never imported from the file system,
# never put in sys.modules.
#
# Everything here is reachable by the loaded code (any function's
# __globals__), so nothing here is trusted to stay intact: audit recording is
# switched by C++ around the library call (there is no switch in this
# namespace), the bridge accepts calls only from this code, and C++ seals
# this namespace (functions, classes, dispatch tables) after creating it and
# reports any change after every load (runtime/embed/loader.cc).
#
# prepare() picks the driver of a loader of the table; the driver runs the
# REAL library loader (torch.load, joblib.load, numpy.load, pickle.load) with
# the instrumented unpickler in place of the library's own.

import sys


def _torch_load(path):
    import torch
    import torch.serialization as ser
    # torch 1.13 as packaged by Debian ignores the pickle_module argument
    # when weights_only is False (it rebinds it to the module-global
    # `pickle`), so the global is swapped for the duration of the load too.
    saved = ser.pickle
    ser.pickle = mod = _module()
    try:
        if _STATE.legacy is None:
            return torch.load(path, map_location='cpu', pickle_module=mod)
        # A legacy (non-zip, non-tar) file: torch.load opens the path the
        # same way (open(path, 'rb')); through _LegacyFile its storages above
        # the lazy threshold are neither allocated nor read
        # (hooks/unpickler.py, "torch's legacy (non-zip) format").
        with open(path, 'rb') as f:
            return torch.load(_LegacyFile(f), map_location='cpu',
                              pickle_module=mod)
    finally:
        ser.pickle = saved


def _torch_legacy(path):
    """Whether torch.load(path) reads `path` as torch's legacy pickle
    sequence: neither a zip (torch's _is_zipfile: the first 4 bytes) nor a
    tar archive (tried first by torch's _legacy_load; any other error than
    TarError there is torch's, so such files keep the path)."""
    import tarfile
    try:
        with open(path, 'rb') as f:
            if f.read(4) == b'PK\x03\x04':
                return False
            f.seek(0)
            try:
                tarfile.open(fileobj=f, mode='r:',
                             format=tarfile.PAX_FORMAT).close()
            except tarfile.TarError:
                return True
    except Exception:
        pass
    return False


def _joblib_load(path):
    import joblib
    import joblib.numpy_pickle as jnp
    cls = _joblib_class()
    saved = jnp.NumpyUnpickler
    jnp.NumpyUnpickler = cls
    try:
        return joblib.load(path)
    finally:
        jnp.NumpyUnpickler = saved


def _numpy_load(path):
    import numpy
    import numpy.lib.format as fmt
    import numpy.lib.npyio as npyio
    saved = fmt.pickle, npyio.pickle
    fmt.pickle = npyio.pickle = _module()
    try:
        obj = numpy.load(path, allow_pickle=True)
        if isinstance(obj, npyio.NpzFile):
            # numpy.load is lazy for .npz: read every member as a user would.
            members = {}
            with obj:
                for k in obj.files:
                    _STATE.member = k if k in obj.zip.namelist() else k + '.npy'
                    members[k] = obj[k]
            _STATE.member = ''
            # The NpzFile is closed now; its digest covers these values.
            _STATE.npz_members = members
        return obj
    finally:
        fmt.pickle, npyio.pickle = saved


_KIND_LOG = _dh.LOG  # noqa: F821  (injected)


def _pickle_load(path):
    """pickle.load in a loop on one open file, as callers that read stacked
    pickles do (`while True: objs.append(pickle.load(f))` until EOFError):
    every stream runs, in order. Returns the first stream's object (what a
    single pickle.load returns); an error in stream 0 is the load's error,
    a later stream's error ends the loop and is reported. Before each stream
    after the first a LOG "dynahug.pickle_stream" {index, offset} marks where
    its events start; after a multi-stream load (or one stopped by a later
    stream's error) a LOG "dynahug.pickle_streams" {streams, stop} sums up.
    The parent turns the marks into Event.stream (runtime/trace)."""
    with open(path, 'rb') as f:
        first = load(f)
        index, stop = 1, 'EOF'
        while True:
            offset = f.tell()
            if not f.read(1):
                break
            f.seek(offset)
            _emit(_KIND_LOG, 'dynahug.pickle_stream',
                  (('index', str(index)), ('offset', str(offset))), -1, 1,
                  _STATE.member)
            try:
                load(f)
            except EOFError as e:
                stop = 'EOFError: %s' % (str(e)[:200],)
                index += 1
                break
            except Exception as e:
                stop = '%s: %s' % (_tname(type(e)), str(e)[:200])
                index += 1
                break
            index += 1
        if index > 1:
            _emit(_KIND_LOG, 'dynahug.pickle_streams',
                  (('streams', str(index)), ('stop', stop)), -1, 1,
                  _STATE.member)
        return first


def torch_zip_member(path):
    """Name of the pickle torch.load will read from a torch zip, or ''.
    Mirrors torch's PyTorchStreamReader: the archive folder is the first
    entry's folder and records are looked up case-insensitively; only the
    central directory is read (flag bits, CRCs and local header names do not
    matter here, as they do not to torch). Called by the C++ side before any
    observer starts; only labels events, so a zip Python cannot parse gives
    '' and the load still runs."""
    import zipfile
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except Exception:
        return ''
    if not names:
        return ''
    folder = names[0].split('/', 1)[0] if '/' in names[0] else ''
    want = (folder + '/data.pkl' if folder else 'data.pkl').lower()
    for n in names:
        if n.lower() == want:
            return n
    return ''


# The loader table (runtime/embed/loader_table.h), injected by C++ as
# ((name, driver function name), ...) and removed after this code ran.
LOADERS = {name: globals()[driver] for name, driver in _loaders}  # noqa: F821


def prepare(path, loader, opcodes, lazy_threshold, fast=False, member=''):
    """Sets the load up. Returns (driver, new_class): C++ calls driver(path)
    with audit recording on; new_class is a class this call built for the
    instrumentation (C++ adds it to the seal), else None. Runs before any
    observer starts."""
    fn = LOADERS.get(loader)
    if fn is None:
        raise ValueError('unknown loader %r' % (loader,))
    _STATE.opcodes = bool(opcodes)
    _STATE.fast = bool(fast)
    _STATE.lazy_threshold = lazy_threshold if fn is _torch_load else -1
    _STATE.legacy = ({} if fn is _torch_load and lazy_threshold >= 0
                     and _torch_legacy(path) else None)
    _STATE.member = member
    _STATE.npz_members = None
    new_class = None
    if fn is _joblib_load and _joblib_unpickler is None:
        new_class = _joblib_class()
    # A forked child inherits the zygote's cached tempfile.gettempdir() (set
    # e.g. while importing torch, from the zygote's TMPDIR): forget it so
    # that the child's own TMPDIR (its scratch directory) is used.
    tempfile = sys.modules.get('tempfile')
    if tempfile is not None:
        tempfile.tempdir = None
    return fn, new_class


def digest(value, lazy_threshold):
    """value_digest() of what the driver returned (C++ calls it after the
    recording window); an NpzFile, closed by _numpy_load, is digested by the
    members _numpy_load read."""
    members, _STATE.npz_members = getattr(_STATE, 'npz_members', None), None
    return value_digest(value, lazy_threshold, members)


def result(ok, value):
    """(ok, type_name, is_stub, error_type, error_message) of a driver call
    that returned `value` (ok) or raised `value` (not ok)."""
    _STATE.opcodes = False
    _STATE.fast = False
    _STATE.lazy_threshold = -1
    _STATE.legacy = None
    if not ok:
        try:
            msg = str(value)
        except BaseException:
            msg = '<unprintable>'
        return (False, '', False, _tname(type(value)), msg[:1000])
    t = type(value)
    return (True, _tname(t), issubclass(t, _StubBase), '', '')
