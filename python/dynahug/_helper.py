"""The helper process: ``dynahug serve`` (runtime/cli/serve_command.h).

The analysis never forks this (possibly huge, multi-threaded) process:
the helper is started once, on first use, with ``subprocess`` (an exec,
through vfork/posix_spawn on CPython >= 3.10, so the caller's memory is
never copied), keeps a warm worker zygote, and is reused for every scan.
Each request carries the exact bytes to analyse; the reply is the verdict,
the loader the sandbox ran and the globals it resolved.

A process forked after the helper started (multiprocessing) starts its own
helper on first use instead of sharing the parent's pipes. Requests are
serialised by a lock (one helper per process).
"""

import fcntl
import json
import os
import struct
import subprocess
import threading

from ._errors import ScanError


class Helper:
    def __init__(self, binary, args):
        self.binary = binary
        self.args = list(args)
        self.pid_owner = os.getpid()
        try:
            self.proc = subprocess.Popen(
                [binary, 'serve'] + self.args, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, close_fds=True)
        except OSError as e:
            raise ScanError('dynahug: cannot start the helper %s: %s'
                            % (binary, e)) from None
        # Model files are megabytes: 1 MiB pipes (the default unprivileged
        # maximum) instead of 64 KiB cut the context switches per request.
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
            except OSError:
                pass
        hello = self._read_json()
        if hello is None or not hello.get('ready'):
            error = (hello or {}).get('error', 'it exited before answering')
            self.close()
            raise ScanError('dynahug: the helper did not start: %s' % error)
        self.model = hello.get('model', '')
        self.helper_pid = hello.get('pid')

    def _read_frame(self):
        head = self.proc.stdout.read(4)
        if len(head) != 4:
            return None
        (n,) = struct.unpack('<I', head)
        body = self.proc.stdout.read(n)
        return body if len(body) == n else None

    def _read_json(self):
        body = self._read_frame()
        return None if body is None else json.loads(body)

    def alive(self):
        return self.proc.poll() is None and self.pid_owner == os.getpid()

    def scan(self, data, name, want_trace=False):
        """Returns (reply dict, trace dict or None). Raises ScanError when
        the helper died or broke the protocol."""
        name = os.path.basename(str(name)).replace('\n', ' ') or 'model'
        header = ('op=scan\nname=%s\ntrace=%d\n'
                  % (name, 1 if want_trace else 0)).encode('utf-8',
                                                          'surrogateescape')
        try:
            self.proc.stdin.write(struct.pack('<I', len(header)) + header +
                                  struct.pack('<Q', len(data)))
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except OSError as e:
            raise ScanError('dynahug: the helper is gone: %s' % e) from None
        reply = self._read_json()
        if reply is None:
            raise ScanError('dynahug: the helper died during the scan '
                            '(exit status %s)' % self.proc.poll())
        if 'fatal' in reply:
            raise ScanError('dynahug: the helper failed: %s' % reply['fatal'])
        trace = None
        if reply.get('trace_follows'):
            trace = self._read_json()
            if trace is None:
                raise ScanError('dynahug: the helper died sending the trace')
        return reply, trace

    def close(self):
        """Stops the helper (end of input, then a kill after 10 s). In a
        forked child, only closes this process's copies of the pipes."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.stdout.close()
        if self.pid_owner != os.getpid():
            return  # the parent's helper: not ours to stop or reap
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class HelperHolder:
    """The process's one helper, started on first use and replaced when it
    died, when the options changed, or in a forked child."""

    def __init__(self):
        self.lock = threading.Lock()
        self.helper = None

    def scan(self, binary, args, data, name, want_trace):
        with self.lock:
            h = self.helper
            if h is not None and (not h.alive() or h.binary != binary or
                                  h.args != list(args)):
                h.close()
                h = self.helper = None
            if h is None:
                h = self.helper = Helper(binary, args)
            try:
                return h.model, h.scan(data, name, want_trace)
            except ScanError:
                if not h.alive():
                    h.close()
                    self.helper = None
                raise

    def close(self):
        with self.lock:
            if self.helper is not None:
                self.helper.close()
                self.helper = None
