#!/usr/bin/python3
"""Runs a command; prints its wall time and peak resident memory.

Usage: /usr/bin/python3 bench/peak_rss.py LABEL CMD [ARG...]

Prints one line:
  LABEL  wall S  peak-rss MiB (largest single process of the tree)  [per role]
The tree-wide figure is ru_maxrss from wait4(): the peak RSS of the largest
single process among the command and every descendant it reaped (Linux folds
reaped children's peaks into their parent's), so no process, however short,
is missed. The per-role peaks come from polling VmHWM of every live
descendant every 5 ms ("parent" = the command itself, other roles by
process name); processes shorter than a poll may be missing there.
The command's stdout goes to /dev/null, its stderr is kept.
"""
import os
import resource
import sys
import time


def children_of(pids):
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid in pids:
            out.add(int(entry))
    return out


def hwm_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def name_of(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def main():
    label, cmd = sys.argv[1], sys.argv[2:]
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, 1)
        os.execvp(cmd[0], cmd)
    peaks = {}  # role -> KiB
    known = {pid}
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        known = {p for p in known if os.path.exists(f"/proc/{p}")} | {pid}
        known |= children_of(known)
        for p in known:
            role = "parent" if p == pid else name_of(p)
            peaks[role] = max(peaks.get(role, 0), hwm_kib(p))
        time.sleep(0.005)
    wall = time.monotonic() - t0
    code = os.waitstatus_to_exitcode(status)
    roles = " ".join(f"{r}={kib / 1024:.0f}" for r, kib in sorted(peaks.items()))
    print(f"{label:<44} exit {code:3d}  wall {wall:7.2f} s  "
          f"peak RSS {usage.ru_maxrss / 1024:7.0f} MiB  [{roles}]", flush=True)


if __name__ == "__main__":
    main()
