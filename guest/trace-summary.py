#!/usr/bin/env python3
"""trace-summary.py FILE... - what a recorded balloon trace (docs/vm.md,
thpfs-vm-trace v1, plain or .gz) asked of the host: discards, requests,
2 MiB ranges touched and covered whole, per phase (inflate/deflate)."""
import gzip
import sys

HUGE = 2 << 20
PAGE = 4096


def summary(path):
    opener = gzip.open if path.endswith(".gz") else open
    phase, stats = "before-inflate", {}
    with opener(path, "rt") as f:
        for line in f:
            w = line.split()
            if not w or w[0].startswith("#") or w[0] == "ram":
                continue
            if w[0] in ("inflate", "deflate"):
                phase = "%s %d MiB" % (w[0], int(w[1], 16) >> 20)
                continue
            s = stats.setdefault(phase, {"req": 0, "d": 0, "big": 0, "bytes": 0, "pages": {}})
            if w[0] == "req":
                s["req"] += 1
            elif w[0] == "d":
                off, length = int(w[1], 16), int(w[2], 16)
                s["d"] += 1
                s["bytes"] += length
                s["big"] += length >= HUGE
                for o in range(off, off + length, PAGE):
                    s["pages"][o // HUGE] = s["pages"].get(o // HUGE, 0) + 1
    for phase, s in stats.items():
        full = sum(1 for n in s["pages"].values() if n >= HUGE // PAGE)
        print("%s: %s: %d requests, %d discards (%d of 2 MiB or more), %d MiB; "
              "%d 2 MiB ranges touched, %d of them whole" %
              (path, phase, s["req"], s["d"], s["big"], s["bytes"] >> 20, len(s["pages"]), full))


for p in sys.argv[1:]:
    summary(p)
