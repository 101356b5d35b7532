"""dynahug: load untrusted model files only after a sandboxed analysis.

    import dynahug
    model = dynahug.load("model.pt", map_location="cpu")   # or .joblib, .npy, .pkl
    verdict = dynahug.scan("model.pt")                     # analyse only
    with dynahug.guard():                                   # or dynahug.patch()
        obj = torch.load("model.pt")                        # goes through dynahug

``load`` sends the file's bytes to a helper process (``dynahug serve``, the
C++ core: sandboxed load in a warm zygote, one-class SVMs, capabilities).
Malicious bytes raise MaliciousModelError, an inconclusive analysis raises
ScanError; benign bytes are loaded in this process from the same in-memory
copy, with the loader the sandbox ran and an unpickler that resolves only
the globals the sandboxed run resolved. DYNAHUG_GUARD=1 in the environment
patches every Python process at start-up (through dynahug-guard.pth).
See README.md, "Python package".
"""

from ._core import Policy, configure, load, policy, scan, shutdown, stats
from ._errors import (DynahugError, MaliciousModelError, Reason,
                      ResolvedGlobal, ScanError, UnvettedGlobalError, Verdict)
from ._patch import guard, patch, patched, unpatch

from ._config import VERSION as __version__  # the CMake project's

__all__ = [
    'DynahugError', 'MaliciousModelError', 'Policy', 'Reason',
    'ResolvedGlobal', 'ScanError', 'UnvettedGlobalError', 'Verdict',
    'configure', 'guard', 'load', 'patch', 'patched', 'policy', 'scan',
    'shutdown', 'stats', 'unpatch',
]
