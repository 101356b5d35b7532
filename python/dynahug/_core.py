"""scan() and load(): the policy, the verdict cache and the dispatch to the
host-side loads (_safeload)."""

import atexit
import collections
import dataclasses
import hashlib
import os
import threading
import warnings

from . import _config, _helper, _safeload
from ._errors import MaliciousModelError, ScanError, Verdict


@dataclasses.dataclass
class Policy:
    """What dynahug.load and the patched loaders do (dynahug.configure).

    model      model bundle file (None: the default bundle; the helper
               honours $DYNAHUG_MODEL)
    strict     True (default): an inconclusive analysis ("error") and a
               format dynahug does not analyse ("skipped") raise
               ScanError. False: such bytes are still loaded, but through
               an unpickler that resolves only ``allow_globals`` (so a
               plain-data pickle loads and nothing executes), with a
               warning.
    allow_globals  extra "module.name" globals the host-side load may
               resolve although the sandboxed run did not (e.g. classes of
               a module installed here but not for the sandbox, which it
               resolved to a stub).
    cache      keep verdicts by SHA-256 of the bytes (with the file name's
               extension and this policy), so loading the same content
               twice costs one analysis.
    cache_size most verdicts kept (least recently used dropped).
    timeout    per-load sandbox limit, seconds (None: the default, 10 s).
    memory_mib per-load sandbox memory limit (None: the default).
    binary     the dynahug executable (None: $DYNAHUG_BIN, else the one
               this package was built or installed with).
    """
    model: str = None
    strict: bool = True
    allow_globals: frozenset = frozenset()
    cache: bool = True
    cache_size: int = 1024
    timeout: int = None
    memory_mib: int = None
    binary: str = None

    def helper_args(self):
        args = []
        if self.model:
            args += ['--model', str(self.model)]
        if self.timeout:
            args += ['--timeout', str(int(self.timeout))]
        if self.memory_mib:
            args += ['--memory', str(int(self.memory_mib))]
        return args

    def helper_binary(self):
        return self.binary or os.environ.get('DYNAHUG_BIN') or _config.BINARY

    def allowed_extra(self):
        out = set()
        for g in self.allow_globals:
            if isinstance(g, tuple):
                out.add(g)
            else:
                module, _, name = str(g).rpartition('.')
                out.add((module, name))
        return out


_policy = Policy(strict=os.environ.get('DYNAHUG_STRICT', '1') != '0')
_holder = _helper.HelperHolder()
atexit.register(_holder.close)
_cache = collections.OrderedDict()
_cache_lock = threading.Lock()
_stats = {'scans': 0, 'cache_hits': 0}


def configure(**changes):
    """Changes the process-wide policy (see Policy); returns the new one.
    Unknown names raise TypeError. The verdict cache is emptied."""
    global _policy
    if 'allow_globals' in changes:
        changes['allow_globals'] = frozenset(changes['allow_globals'])
    _policy = dataclasses.replace(_policy, **changes)
    with _cache_lock:
        _cache.clear()
    return _policy


def policy():
    return _policy


def stats():
    """Scans sent to the helper and verdicts served from the cache."""
    return dict(_stats)


def shutdown():
    """Stops the helper process (the next scan starts a new one)."""
    _holder.close()


def read_bytes(source):
    """(bytes, name, file object or None) of a path, a path-like, bytes or a
    binary file object (read from its current position to the end)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), '<bytes>', None
    if hasattr(source, 'read'):
        data = source.read()
        if isinstance(data, str):
            raise TypeError('dynahug: the file must be opened in binary mode')
        return data, getattr(source, 'name', '<file>'), source
    path = os.fspath(source)
    with open(path, 'rb') as f:
        return f.read(), path, None


def scan_bytes(data, name='<bytes>', trace=False, policy=None):
    """The Verdict of ``data`` (analysed in the helper's sandbox)."""
    p = policy or _policy
    digest = hashlib.sha256(data).hexdigest()
    # The sandbox may choose the loader by extension too: same content under
    # another extension is another analysis.
    base = os.path.basename(str(name))
    suffix = base[base.find('.'):].lower() if '.' in base else ''
    key = (digest, suffix, p.helper_binary(), tuple(p.helper_args()))
    if p.cache and not trace:
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                _stats['cache_hits'] += 1
                return dataclasses.replace(hit, name=str(name))
    model, (reply, trace_doc) = _holder.scan(
        p.helper_binary(), p.helper_args(), data, name, trace)
    _stats['scans'] += 1
    verdict = Verdict.from_reply(reply, str(name), model, trace_doc)
    if verdict.sha256 and verdict.sha256 != digest:
        raise ScanError('dynahug: the helper analysed other bytes (sha256 %s, '
                        'expected %s)' % (verdict.sha256, digest), verdict)
    # The helper skips hashing (storages are not read, and these bytes were
    # hashed here): the verdict is about exactly these bytes.
    verdict = dataclasses.replace(verdict, sha256=digest)
    # An inconclusive result may be transient (a timeout under load).
    if p.cache and verdict.label != 'error':
        with _cache_lock:
            _cache[key] = dataclasses.replace(verdict, trace=None)
            while len(_cache) > max(0, p.cache_size):
                _cache.popitem(last=False)
    return verdict


def scan(source, *, trace=False):
    """Analyses a file (path, path-like, bytes or binary file object) in the
    sandbox without loading it here; returns its Verdict. ``trace=True``
    also returns the full trace as a dict (``verdict.trace``). Raises
    ScanError only when the helper itself fails."""
    data, name, _ = read_bytes(source)
    return scan_bytes(data, name, trace)


def vetted_globals(verdict, policy):
    """The globals the host-side load may resolve for ``verdict``."""
    allowed = policy.allowed_extra()
    if verdict.benign and verdict.loaded:
        allowed.update((g.module, g.name) for g in verdict.globals
                       if not g.stub)
    return frozenset(allowed)


def check(verdict, policy):
    """Raises unless ``verdict`` lets the bytes be loaded here.

    A benign verdict whose sandboxed load did not complete (the loader
    raised, a limit) counts as inconclusive: what did not load in the
    sandbox is not loaded here, where it could take another path."""
    if verdict.malicious:
        raise MaliciousModelError(verdict)
    if verdict.benign and verdict.loaded:
        return
    if verdict.benign:
        what = ('its sandboxed load did not complete (%s)'
                % (verdict.load_error or 'no reason given'))
    elif verdict.label == 'error':
        what = 'analysis inconclusive: ' + verdict.error
    else:
        what = 'not analysed (%s)' % verdict.skip_reason
    if policy.strict:
        raise ScanError('dynahug: %s: %s' % (verdict.name, what), verdict)
    warnings.warn('dynahug: %s: %s; loading it with only the allowlisted '
                  'globals (strict=False)' % (verdict.name, what),
                  RuntimeWarning, stacklevel=4)


def load(source, *, loader=None, **loader_kwargs):
    """Analyses the file in the sandbox and, when it is benign, loads it in
    this process with the loader the sandbox ran (or ``loader``:
    "torch.load", "joblib.load", "numpy.load", "pickle.load"), returning
    what that loader returns. ``loader_kwargs`` go to it (e.g.
    map_location for torch.load, mmap_mode for joblib.load).

    Raises MaliciousModelError (with .verdict) when the file is judged
    malicious or asks here for a global its analysed run never resolved,
    ScanError when the analysis is inconclusive (strict policy, the
    default).
    """
    data, name, _ = read_bytes(source)
    p = _policy
    verdict = scan_bytes(data, name, policy=p)
    check(verdict, p)
    allowed = vetted_globals(verdict, p)
    which = loader or verdict.loader or 'pickle.load'
    return load_vetted(which, data, allowed, verdict, loader_kwargs)


def load_vetted(which, data, allowed, verdict, kwargs, file=None):
    from . import _patch
    if which == 'torch.load':
        return _safeload.load_torch(_patch.original('torch', 'load'), data,
                                    allowed, verdict, kwargs)
    if which == 'joblib.load':
        return _safeload.load_joblib(data, allowed, verdict, kwargs)
    if which == 'numpy.load':
        return _safeload.load_numpy(_patch.original('numpy', 'load'), data,
                                    allowed, verdict, kwargs)
    if which == 'pickle.load':
        return _safeload.load_pickle(data, allowed, verdict, kwargs, file)
    raise ScanError('dynahug: no host-side load for loader %r' % which,
                    verdict)
