"""same(a, b): deep equality of two loaded objects for the differential
tests of dynahug.load against the plain loaders: equal types everywhere,
equal tensors (dtype, shape, values), equal arrays (NaN equal to NaN),
equal containers and equal instance state, recursively."""

import math


def same(a, b, path='obj', depth=0):
    """None when equal, else a string saying where they differ.

    One documented exception to "equal types": an .npz with object
    members comes back from dynahug.load as a subclass of NpzFile that
    reads those members with the restricted unpickler (python/dynahug/
    _safeload.py); it is compared as an NpzFile."""
    if depth > 60:
        return None
    if (type(b).__name__ == 'VettedNpzFile' and
            type(b).__module__ == 'dynahug._safeload'):
        import numpy as np
        if type(a) is not np.lib.npyio.NpzFile:
            return '%s: type %s vs %s' % (path, type(a), type(b))
        b_files, a_files = b.files, a.files
        if a_files != b_files:
            return '%s: npz members %s vs %s' % (path, a_files, b_files)
        for k in a_files:
            d = same(a[k], b[k], '%s[%r]' % (path, k), depth + 1)
            if d:
                return d
        return None
    if type(a) is not type(b):
        return '%s: type %s vs %s' % (path, type(a), type(b))
    mod = type(a).__module__ or ''
    if mod.startswith('torch'):
        import torch
        if isinstance(a, torch.Tensor):
            if a.dtype != b.dtype or a.shape != b.shape:
                return '%s: tensor %s%s vs %s%s' % (path, a.dtype, a.shape,
                                                     b.dtype, b.shape)
            if a.is_quantized or a.layout != torch.strided:
                return None if str(a) == str(b) else path + ': tensor values'
            if not torch.equal(a.nan_to_num(), b.nan_to_num()) if \
                    a.is_floating_point() else not torch.equal(a, b):
                return path + ': tensor values'
            return None
        if isinstance(a, torch.jit.ScriptModule):
            def code(m):
                try:
                    return m.original_name, m.code
                except AttributeError:  # no forward()
                    return m.original_name, None
            if code(a) != code(b):
                return path + ': TorchScript code'
            return same(a.state_dict(), b.state_dict(), path + '.state_dict',
                        depth + 1)
        if isinstance(a, torch.nn.Module):
            return same(a.state_dict(), b.state_dict(), path + '.state_dict',
                        depth + 1) or same(
                            {k: v for k, v in vars(a).items()
                             if k not in ('_parameters', '_buffers',
                                          '_modules')},
                            {k: v for k, v in vars(b).items()
                             if k not in ('_parameters', '_buffers',
                                          '_modules')},
                            path, depth + 1)
    if mod.startswith('numpy'):
        import numpy as np
        if isinstance(a, np.ndarray):
            if a.dtype != b.dtype or a.shape != b.shape:
                return '%s: array %s%s vs %s%s' % (path, a.dtype, a.shape,
                                                   b.dtype, b.shape)
            if a.dtype.hasobject:
                for i, (x, y) in enumerate(zip(a.ravel(), b.ravel())):
                    d = same(x, y, '%s[%d]' % (path, i), depth + 1)
                    if d:
                        return d
                return None
            ok = np.array_equal(a, b, equal_nan=a.dtype.kind in 'fc')
            return None if ok else path + ': array values'
        if isinstance(a, np.lib.npyio.NpzFile):
            if a.files != b.files:
                return '%s: npz members %s vs %s' % (path, a.files, b.files)
            for k in a.files:
                d = same(a[k], b[k], '%s[%r]' % (path, k), depth + 1)
                if d:
                    return d
            return None
        if isinstance(a, np.generic):
            return None if (a == b or (a != a and b != b)) else path
        if isinstance(a, np.dtype):
            return None if a == b else path
    if mod.startswith('pandas'):
        return None if a.equals(b) else path + ': pandas values'
    if isinstance(a, float):
        return None if a == b or (math.isnan(a) and math.isnan(b)) else path
    if isinstance(a, (int, str, bytes, bool, complex, type(None), type)):
        return None if a == b else '%s: %r vs %r' % (path, a, b)
    if isinstance(a, dict):
        if list(a.keys()) != list(b.keys()):
            return '%s: keys %s vs %s' % (path, list(a)[:5], list(b)[:5])
        for k in a:
            d = same(a[k], b[k], '%s[%r]' % (path, k), depth + 1)
            if d:
                return d
        return None
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return '%s: len %d vs %d' % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            d = same(x, y, '%s[%d]' % (path, i), depth + 1)
            if d:
                return d
        return None
    if isinstance(a, (set, frozenset)):
        return None if a == b else path
    state_a = getattr(a, '__dict__', None)
    if state_a is not None:
        return same(state_a, b.__dict__, path + '.__dict__', depth + 1)
    if hasattr(a, '__getstate__'):
        try:
            return same(a.__getstate__(), b.__getstate__(), path + '.state',
                        depth + 1)
        except Exception:
            pass
    return None if repr(a) == repr(b) else '%s: %r vs %r' % (path, a, b)
