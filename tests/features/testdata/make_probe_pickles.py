#!/usr/bin/python3
"""Writes the harmless probe pickles whose traces are committed here.

Usage: make_probe_pickles.py OUT_DIR

Pickles are assembled from opcodes; nothing is unpickled here. Their
payloads are the project's harmless probes only (run /bin/true, create a
file under /tmp/dynahug_pwned/, import a stdlib module).
"""
import os
import struct
import sys


def global_op(module, name):
    return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def unicode_op(text):
    data = text.encode()
    return b'X' + struct.pack('<I', len(data)) + data


PICKLES = {
    # REDUCE os.system('/bin/true'): the sandbox blocks the clone.
    'os_system_true.pkl': b'\x80\x02' + global_op('os', 'system') +
    unicode_op('/bin/true') + b'\x85R.',
    # REDUCE builtins.exec(<source>): compile and exec caused by an opcode.
    'exec_string.pkl': b'\x80\x02' + global_op('builtins', 'exec') +
    unicode_op("import os; os.makedirs('/tmp/dynahug_pwned',exist_ok=True); "
               "open('/tmp/dynahug_pwned/features','w')") + b'\x85R.',
    # GLOBAL webbrowser.get: an import (marshal.loads, exec of module code)
    # caused by resolving a global.
    'global_import_webbrowser.pkl': b'\x80\x02' +
    global_op('webbrowser', 'get') + b')R.',
}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, data in PICKLES.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()
