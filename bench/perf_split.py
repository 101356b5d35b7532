#!/usr/bin/python3
"""Splits a `perf record --call-graph dwarf` profile of trace_throughput
(--mode inproc) into where the per-file CPU goes.

Usage:
  perf record -D 6000 -F 999 --call-graph dwarf,16384 -o perf.data -- \\
      build/bench/trace_throughput --mode inproc --rounds 3 @LIST
  perf script -i perf.data -F pid,ip,sym,dso > perf.txt
  /usr/bin/python3 bench/perf_split.py perf.txt

The zygote is the process with the most samples; every other pid is a
sandboxed child. Each sample goes to the first category whose marker
appears in its stack (innermost frame first), so the order below matters.
"""
import collections
import re
import sys

ZYGOTE = [
    ("fork (copy page tables, VMAs)", ("kernel_clone", "copy_process")),
    ("reap (wait4) and exit bookkeeping", ("kernel_wait4", "do_wait")),
    ("seccomp supervisor", ("SyscallSupervisor", "seccomp_notify")),
    ("event channel read/parse", ("EventReader",)),
    ("static analysis", ("AnalyzeFile", "DecodePickle", "ContainerReader",
                         "Sha256", "StaticTrace")),
    ("trace assembly/serialize", ("SerializeToString", "MergeFrom",
                                  "TraceRunner::Trace", "CopyFrom")),
    ("poll loop", ("do_sys_poll",)),
    ("scratch dir create/remove", ("mkdir", "unlinkat", "rmdir",
                                   "RemoveTree", "ScratchDir")),
]
CHILD = [
    ("exit (mm teardown)", ("do_exit", "exit_mmap", "do_group_exit")),
    ("load + hooks: page faults (COW)", ("Loader::Load+fault",)),
    ("load + hooks: Python/C", ("Loader::Load",)),
    ("sandbox setup (RunChild before body)", ("RunChild",)),
    ("child page faults elsewhere", ("exc_page_fault",)),
    ("fork return / scheduler", ("ret_from_fork", "schedule",
                                 "finish_task_switch")),
]


def parse(path):
    samples = []
    pid, frames = None, []
    for line in open(path, errors="replace"):
        if not line.strip():
            if pid is not None:
                samples.append((pid, frames))
            pid, frames = None, []
            continue
        if pid is None:
            pid = line.split()[0]
            continue
        m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
        if m:
            frames.append(m.group(1))
    if pid is not None:
        samples.append((pid, frames))
    return samples


def category(frames, table):
    stack = " | ".join(frames)
    for name, markers in table:
        for marker in markers:
            if marker.endswith("+fault"):
                if (marker[:-6] in stack and frames and
                        any("page_fault" in f or "handle_mm_fault" in f
                            for f in frames[:12])):
                    return name
            elif marker in stack:
                return name
    return "other"


def main():
    samples = parse(sys.argv[1])
    per_pid = collections.Counter(p for p, _ in samples)
    zygote = per_pid.most_common(1)[0][0]
    total = len(samples)
    for label, table, mine in (("zygote", ZYGOTE, True),
                               ("children", CHILD, False)):
        counts = collections.Counter()
        for pid, frames in samples:
            if (pid == zygote) == mine:
                counts[category(frames, table)] += 1
        n = sum(counts.values())
        print(f"{label}: {100 * n / total:.1f}% of all samples")
        for name, c in counts.most_common():
            print(f"  {100 * c / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
