"""Writes the abuse and analyst-mode inputs of the integration tests.

Usage: /usr/bin/python3 gen_abuse_inputs.py OUT_DIR

OUT_DIR/abuse/<name>.pkl    resource-abuse pickles (bombs, loops, forks...)
OUT_DIR/analyst/<name>.pkl  benign and malicious pickles for `trace --opcodes`
OUT_DIR/analyst/genops.json {name: [[opcode name, offset], ...]} from
                            pickletools.genops, which decodes and never
                            executes.

SAFETY: every abusive or malicious stream is assembled here from raw opcodes
and is never unpickled by this script or by the tests outside the dynahug
sandbox. The only effects the malicious analyst payloads attempt are the
harmless probes (/bin/true, a file under /tmp/dynahug_pwned/). Benign
streams are made with pickle.dumps of plain data.
"""

import json
import os
import pickle
import pickletools
import struct
import sys


# --- raw opcode helpers (protocol 2 opcodes only) --------------------------

PROTO2 = b'\x80\x02'
STOP = b'.'
POP = b'0'
MARK = b'('
EMPTY_TUPLE = b')'
EMPTY_LIST = b']'
EMPTY_DICT = b'}'
APPEND = b'a'
TUPLE1 = b'\x85'
TUPLE2 = b'\x86'
REDUCE = b'R'


def global_(module, name):
    return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def unicode_(text):
    data = text.encode('utf-8')
    return b'X' + struct.pack('<I', len(data)) + data


def int_(value):
    if -(1 << 31) <= value < (1 << 31):
        return b'J' + struct.pack('<i', value)
    data = value.to_bytes((value.bit_length() + 8) // 8, 'little', signed=True)
    return b'\x8a' + bytes([len(data)]) + data


def put(index):
    return b'r' + struct.pack('<I', index)


def get(index):
    return b'j' + struct.pack('<I', index)


def call(module, name, *args):
    """GLOBAL module.name, then args (already encoded), TUPLE, REDUCE."""
    assert 1 <= len(args) <= 2 or not args
    tuple_op = {0: EMPTY_TUPLE, 1: TUPLE1, 2: TUPLE2}[len(args)]
    if not args:
        return global_(module, name) + EMPTY_TUPLE + REDUCE
    return global_(module, name) + b''.join(args) + tuple_op + REDUCE


def exec_source(source):
    """exec(source, {}): a fresh globals dict, so functions the source
    defines can see each other (exec without globals would use the
    unpickler frame's locals)."""
    return PROTO2 + call('builtins', 'exec', unicode_(source), EMPTY_DICT) + STOP


# --- abuse inputs -----------------------------------------------------------

def string_doubling_bomb(doublings=40):
    """Memo-based exponential growth: s = 'x' * 1024, then s = s + s (via
    operator.add on two memo GETs) `doublings` times: 1 KiB * 2**40."""
    out = [PROTO2, unicode_('x' * 1024), put(0)]
    for i in range(doublings):
        out += [POP, global_('operator', 'add'), get(i), get(i), TUPLE2,
                REDUCE, put(i + 1)]
    out.append(STOP)
    return b''.join(out)


def reference_bomb(levels=30, width=10):
    """Billion laughs by reference: level k is a list holding level k-1
    `width` times. Unpickling costs levels*width appends; anything that
    walks the result visits width**levels elements."""
    out = [PROTO2, EMPTY_LIST, put(0)]
    for k in range(1, levels + 1):
        out += [POP, EMPTY_LIST, MARK] + [get(k - 1)] * width
        out += [b'e', put(k)]  # APPENDS
    out.append(STOP)
    return b''.join(out)


def nested_repr_bomb(depth=200000):
    """repr() of a list nested `depth` deep: the nesting is built
    iteratively by opcodes (N EMPTY_LISTs, N-1 APPENDs), repr recurses."""
    return (PROTO2 + global_('builtins', 'repr') + EMPTY_LIST * depth +
            APPEND * (depth - 1) + TUPLE1 + REDUCE + STOP)


ABUSE = {
    # memory
    'string-doubling-bomb': string_doubling_bomb(),
    'bytearray-bomb': PROTO2 + call('builtins', 'bytearray',
                                    int_(10 ** 11)) + STOP,
    'deque-count-bomb': (PROTO2 + global_('collections', 'deque') +
                         call('itertools', 'count') + TUPLE1 + REDUCE + STOP),
    'reference-bomb': reference_bomb(),
    # cpu / time
    'infinite-loop': exec_source('while True: pass'),
    'sleep': PROTO2 + call('time', 'sleep', int_(1000)) + STOP,
    # recursion
    'recursion-function': exec_source('def f():\n    f()\nf()\n'),
    'recursion-nested-repr': nested_repr_bomb(),
    # processes and threads
    'os-fork': PROTO2 + call('os', 'fork') + STOP,
    'fork-bomb': exec_source(
        'import os\n'
        'while True:\n'
        '    try:\n'
        '        os.fork()\n'
        '    except OSError:\n'
        '        pass\n'),
    'thread-spawner': exec_source(
        'import threading, time\n'
        'while True:\n'
        '    threading.Thread(target=time.sleep, args=(1000,),\n'
        '                     daemon=True).start()\n'),
}

BENIGN_AFTER = {'name': 'after-abuse', 'weights': [0.5, 1.5, 2.5],
                'shape': (3,), 'nested': {'ok': True}}


# --- analyst inputs ---------------------------------------------------------

BENIGN_DATA = {'weights': [1.5, -2.25, 3.0], 'name': 'mlp',
               'layers': (16, 32, 8), 'flags': {'bias': True, 'act': None},
               'blob': b'\x00\x01\x02' * 20, 'big': 10 ** 30,
               'text': 'x' * 300}


def malicious_analyst():
    """os.system('/bin/true') by REDUCE, then an exec that tries to open a
    probe file for writing (and swallows the error, so the stream goes on),
    then a benign dict (so the load succeeds)."""
    return (PROTO2 +
            call('os', 'system', unicode_('/bin/true')) + POP +
            call('builtins', 'exec', unicode_(
                "try:\n"
                "    open('/tmp/dynahug_pwned/analyst-exec-open', 'w')\n"
                "except OSError:\n"
                "    pass\n"), EMPTY_DICT) + POP +
            pickle.dumps(BENIGN_DATA, protocol=2)[2:])  # drop its PROTO


def analyst_inputs():
    return {
        'benign-p0': pickle.dumps(BENIGN_DATA, protocol=0),
        'benign-p2': pickle.dumps(BENIGN_DATA, protocol=2),
        'benign-p4': pickle.dumps(BENIGN_DATA, protocol=4),
        'benign-p5': pickle.dumps(BENIGN_DATA, protocol=5),
        'malicious-p2': malicious_analyst(),
    }


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(data)
    os.replace(tmp, path)


def main(argv):
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    out = argv[1]
    for name, data in ABUSE.items():
        write(os.path.join(out, 'abuse', name + '.pkl'), data)
    write(os.path.join(out, 'abuse', 'benign-after.pkl'),
          pickle.dumps(BENIGN_AFTER, protocol=4))
    genops = {}
    for name, data in analyst_inputs().items():
        write(os.path.join(out, 'analyst', name + '.pkl'), data)
        genops[name] = [[op.name, pos] for op, _, pos in
                        pickletools.genops(data)]
    write(os.path.join(out, 'analyst', 'genops.json'),
          json.dumps(genops, sort_keys=True).encode())
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
