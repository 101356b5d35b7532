"""dynahug.patch() / unpatch() / guard(): the library loaders replaced by
versions that analyse the bytes in the sandbox first and load them with
the restricted host-side load (_safeload).

Replaced (each under every name it is published as):
  pickle.load, pickle.loads
  torch.load (= torch.serialization.load)
  joblib.load (= joblib.numpy_pickle.load)
  numpy.load (= numpy.lib.npyio.load), when allow_pickle is true
    (allow_pickle=False never unpickles and is passed through)
torch, joblib and numpy are patched when they are imported, if they are not
imported yet (an import hook; patching never imports them).

Not covered: references taken before patch() (``from pickle import
loads``), pickle.Unpickler / _pickle used directly, pickle.load calls made
inside the C code of other libraries, torch.jit.load, pandas.read_pickle,
dill/cloudpickle's own load functions, and numpy.load(allow_pickle=False)
(safe by itself).
"""

import contextlib
import functools
import importlib.abc
import sys
import threading

from . import _core

_lock = threading.RLock()
# (module name, attribute) -> the original function, while patched.
_originals = {}
_patched = False
_finder = None

# module -> [(submodule holding the same function, attribute)...]
_TARGETS = {
    'pickle': [('pickle', 'load'), ('pickle', 'loads')],
    'torch': [('torch', 'load'), ('torch.serialization', 'load')],
    'joblib': [('joblib', 'load'), ('joblib.numpy_pickle', 'load')],
    'numpy': [('numpy', 'load'), ('numpy.lib.npyio', 'load')],
}


def original(module, name):
    """The unpatched function (imports ``module`` when needed)."""
    with _lock:
        fn = _originals.get((module, name))
    if fn is not None:
        return fn
    return getattr(importlib.import_module(module), name)


def _vetted(which, source, kwargs, file_for_pickle=False):
    data, name, file = _core.read_bytes(source)
    p = _core.policy()
    verdict = _core.scan_bytes(data, name, policy=p)
    _core.check(verdict, p)
    allowed = _core.vetted_globals(verdict, p)
    return _core.load_vetted(which, data, allowed, verdict, kwargs,
                             file if file_for_pickle else None)


def _make(module, name, orig):
    if (module, name) == ('pickle', 'load'):
        def load(file, **kwargs):
            return _vetted('pickle.load', file, kwargs, file_for_pickle=True)
        replacement = load
    elif (module, name) == ('pickle', 'loads'):
        def loads(data, /, **kwargs):
            return _vetted('pickle.load', bytes(data), kwargs)
        replacement = loads
    elif module.startswith('torch'):
        def load(f, map_location=None, pickle_module=None, **kwargs):
            if map_location is not None:
                kwargs['map_location'] = map_location
            if pickle_module is not None:
                kwargs['pickle_module'] = pickle_module
            return _vetted('torch.load', f, kwargs)
        replacement = load
    elif module.startswith('joblib'):
        def load(filename, mmap_mode=None):
            return _vetted('joblib.load', filename, {'mmap_mode': mmap_mode})
        replacement = load
    else:  # numpy
        def load(file, mmap_mode=None, allow_pickle=False, **kwargs):
            if not allow_pickle:
                return orig(file, mmap_mode=mmap_mode, allow_pickle=False,
                            **kwargs)
            if mmap_mode is None or hasattr(file, 'read'):
                return _vetted('numpy.load', file, kwargs)
            # Vet the content, then map the file without unpickling:
            # nothing read from the path afterwards can execute.
            result = _vetted('numpy.load', file, kwargs)
            if isinstance(result, _core_ndarray_types()):
                try:
                    return orig(file, mmap_mode=mmap_mode, allow_pickle=False,
                                **kwargs)
                except ValueError:
                    pass  # object arrays cannot be mapped
            return result
        replacement = load
    functools.update_wrapper(replacement, orig)
    replacement.__dynahug_original__ = orig
    return replacement


def _core_ndarray_types():
    import numpy
    return (numpy.ndarray,)


def _patch_module(top):
    for modname, attr in _TARGETS[top]:
        mod = sys.modules.get(modname)
        if mod is None or (modname, attr) in _originals:
            continue
        orig = getattr(mod, attr, None)
        if orig is None:
            continue
        # torch.load and torch.serialization.load are one function: one
        # replacement for both.
        for (m2, a2), o2 in list(_originals.items()):
            if o2 is orig and m2.split('.')[0] == top:
                setattr(mod, attr, getattr(sys.modules[m2], a2))
                _originals[(modname, attr)] = orig
                break
        else:
            _originals[(modname, attr)] = orig
            setattr(mod, attr, _make(modname, attr, orig))


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches torch/joblib/numpy right after they are first imported."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, 'exec_module'):
            return spec
        exec_module = loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            with _lock:
                if _patched:
                    _patch_module(fullname)

        # The module's own loader object (one per module file) runs the
        # patch after executing it; __loader__ stays what it was.
        loader.exec_module = exec_and_patch
        return spec


def patch():
    """Replaces the loaders (see the module docstring). Idempotent."""
    global _patched, _finder
    with _lock:
        if _patched:
            return
        _patched = True
        import pickle  # noqa: F401  (cheap, always patched)
        for top in _TARGETS:
            _patch_module(top)
        _finder = _PatchOnImport()
        sys.meta_path.insert(0, _finder)


def unpatch():
    """Restores every original function. Idempotent."""
    global _patched, _finder
    with _lock:
        if not _patched:
            return
        for (modname, attr), orig in _originals.items():
            setattr(sys.modules[modname], attr, orig)
        _originals.clear()
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
        _finder = None
        _patched = False


def patched():
    return _patched


@contextlib.contextmanager
def guard():
    """``with dynahug.guard():`` patches for the duration of the block
    (and restores on exit unless patch() was already in effect)."""
    with _lock:
        was = _patched
        patch()
    try:
        yield
    finally:
        if not was:
            unpatch()
