"""The load in the caller's process, after the analysis: from the very
bytes that were analysed (an in-memory copy; the path is never read again),
through unpicklers whose ``find_class`` resolves only the globals the
sandboxed load of those bytes resolved (plus the user's allowlist). A file
that behaves differently outside the sandbox therefore cannot reach
anything its analysed run did not: the first unvetted global raises
``UnvettedGlobalError`` before it is imported.

One function per loader, returning what that loader returns:
  torch.load   torch.load(<sealed memfd with the bytes>, pickle_module=
               <restricted>, **kwargs); a real file, so that torch's
               legacy tar format loads as from a path. TorchScript archives
               go to torch.jit.load (torch's C++ unpickler: no Python
               globals, only TorchScript types and code)
  joblib.load  joblib's NumpyUnpickler, restricted, object arrays included
  numpy.load   .npy/.npz without object arrays: numpy.load(allow_pickle=
               False) (no unpickling at all); object arrays and pickles:
               the restricted unpickler
  pickle.load  pickle.Unpickler (the C one), restricted
"""

import fcntl
import io
import os
import pickle
import types

from ._errors import UnvettedGlobalError


def restricted(base, allowed, verdict):
    """A subclass of the unpickler class ``base`` whose find_class refuses
    every (module, name) not in ``allowed``."""

    class RestrictedUnpickler(base):
        def find_class(self, module, name):
            if (module, name) not in allowed:
                raise UnvettedGlobalError(verdict, module, name)
            return super().find_class(module, name)

    RestrictedUnpickler.__qualname__ = 'Restricted' + base.__name__
    return RestrictedUnpickler


def _pickle_module(unpickler_class):
    """A stand-in for the pickle module, for torch.load's pickle_module."""
    mod = types.ModuleType('dynahug_restricted_pickle')
    mod.Unpickler = unpickler_class
    mod.load = lambda f, **kw: unpickler_class(f, **kw).load()
    mod.loads = lambda b, **kw: unpickler_class(io.BytesIO(b), **kw).load()
    mod.__name__ = 'pickle'
    return mod


def load_pickle(data, allowed, verdict, kwargs, file=None):
    """pickle.load semantics: the first pickle of ``data``. When ``file`` is
    given (pickle.load(file)), it is left just past that pickle, as
    pickle.load leaves it."""
    bio = io.BytesIO(data)
    obj = restricted(pickle.Unpickler, allowed, verdict)(bio, **kwargs).load()
    if file is not None and hasattr(file, 'seek'):
        file.seek(file.tell() - len(data) + bio.tell())
    return obj


def sealed_file(data):
    """A read-only file object over a private memfd holding ``data``,
    sealed against any change (F_SEAL_WRITE/GROW/SHRINK/SEAL)."""
    fd = os.memfd_create('dynahug-vetted', os.MFD_CLOEXEC |
                         os.MFD_ALLOW_SEALING)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW |
                    fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
        os.lseek(fd, 0, os.SEEK_SET)
        return os.fdopen(fd, 'rb')
    except BaseException:
        os.close(fd)
        raise


def load_torch(original, data, allowed, verdict, kwargs):
    kwargs = dict(kwargs)
    if not kwargs.get('weights_only'):
        # (weights_only: torch's own allowlist unpickler, stricter than ours.)
        base = getattr(kwargs.get('pickle_module') or pickle, 'Unpickler')
        kwargs['pickle_module'] = _pickle_module(
            restricted(base, allowed, verdict))
    with sealed_file(data) as f:
        return original(f, **kwargs)


def load_joblib(data, allowed, verdict, kwargs):
    from joblib import numpy_pickle as jp
    mmap_mode = kwargs.get('mmap_mode')
    base = restricted(jp.NumpyUnpickler, allowed, verdict)
    inner = restricted(pickle._Unpickler, allowed, verdict)

    class JoblibUnpickler(base):
        # joblib reads object arrays with a plain pickle.load of the same
        # stream (NumpyArrayWrapper.read_array): read them with the
        # restricted unpickler instead. Otherwise joblib's load_build.
        def load_build(self):
            pickle._Unpickler.load_build(self)
            wrapper = self.stack[-1]
            if not isinstance(wrapper, (jp.NDArrayWrapper,
                                        jp.NumpyArrayWrapper)):
                return
            if self.np is None:
                raise ImportError("Trying to unpickle an ndarray, but numpy "
                                  "didn't import correctly")
            self.stack.pop()
            if isinstance(wrapper, jp.NDArrayWrapper):
                self.compat_mode = True
                self.stack.append(wrapper.read(self))
            elif (wrapper.dtype.hasobject and
                  not (self.mmap_mode is not None and wrapper.allow_mmap)):
                array = inner(self.file_handle).load()
                if (hasattr(array, '__array_prepare__') and
                        wrapper.subclass not in (self.np.ndarray,
                                                 self.np.memmap)):
                    new_array = self.np.core.multiarray._reconstruct(
                        wrapper.subclass, (0,), 'b')
                    array = new_array.__array_prepare__(array)
                self.stack.append(array)
            else:
                self.stack.append(wrapper.read(self))

        dispatch = dict(base.dispatch)
        dispatch[pickle.BUILD[0]] = load_build

    bio = io.BytesIO(data)
    with jp._read_fileobject(bio, '', mmap_mode) as fobj:
        unpickler = JoblibUnpickler('', fobj, mmap_mode=mmap_mode)
        try:
            return unpickler.load()
        except UnicodeDecodeError as exc:
            raise ValueError(
                'You may be trying to read with python 3 a joblib pickle '
                'generated with python 2. This feature is not supported by '
                'joblib.') from exc


def _pickle_kwargs(kwargs):
    return {'encoding': kwargs.get('encoding', 'ASCII'),
            'fix_imports': kwargs.get('fix_imports', True)}


def _npy_object_array(member, allowed, verdict, pickle_kwargs):
    """The object array of a .npy stream positioned at its magic, or None
    when it holds no objects (the caller then lets numpy read it)."""
    import numpy as np
    fmt = np.lib.format
    version = fmt.read_magic(member)
    _, _, dtype = fmt._read_array_header(member, version)
    if not dtype.hasobject:
        return None
    return restricted(pickle.Unpickler, allowed, verdict)(
        member, **pickle_kwargs).load()


def load_numpy(original, data, allowed, verdict, kwargs):
    import numpy as np
    kwargs = dict(kwargs)
    kwargs.pop('allow_pickle', None)
    pickle_kwargs = _pickle_kwargs(kwargs)
    if data.startswith(b'\x93NUMPY'):
        array = _npy_object_array(io.BytesIO(data), allowed, verdict,
                                  pickle_kwargs)
        if array is not None:
            return array
        return original(io.BytesIO(data), allow_pickle=False, **kwargs)
    if data.startswith(b'PK\x03\x04') or data.startswith(b'PK\x05\x06'):
        npz = original(io.BytesIO(data), allow_pickle=False, **kwargs)
        has_objects = False
        for member_name in npz._files:
            if not member_name.endswith('.npy'):
                continue
            with npz.zip.open(member_name) as member:
                head = io.BytesIO(member.read(1 << 16))
            try:
                version = np.lib.format.read_magic(head)
                _, _, dtype = np.lib.format._read_array_header(head, version)
            except Exception:
                continue
            has_objects = has_objects or dtype.hasobject
        if not has_objects:
            return npz
        npz.close()
        return _vetted_npz(original, data, allowed, verdict, kwargs,
                           pickle_kwargs)
    # numpy.load falls back to pickle.load for anything else.
    return load_pickle(data, allowed, verdict, pickle_kwargs)


def _vetted_npz(original, data, allowed, verdict, kwargs, pickle_kwargs):
    """An NpzFile (a subclass of it) whose object members are read with
    the restricted unpickler; the others as numpy reads them."""
    import numpy as np

    class VettedNpzFile(np.lib.npyio.NpzFile):
        def __getitem__(self, key):
            member = key if key in self._files else key + '.npy'
            if member in self._files and member.endswith('.npy'):
                raw = io.BytesIO(self.zip.read(member))
                array = _npy_object_array(raw, allowed, verdict,
                                          pickle_kwargs)
                if array is not None:
                    return array
            return super().__getitem__(key)

    return VettedNpzFile(io.BytesIO(data), own_fid=False,
                         allow_pickle=False, pickle_kwargs=pickle_kwargs)
