#!/usr/bin/env python3
"""run-vm.py - a real guest's balloon against each way of backing its RAM.

Boots the test guest of guest/build-image.sh under QEMU once per backend
(anonymous RAM, kernel tmpfs huge=always, thpfs through build/libthpfs-qemu.so)
and, per run: waits until the guest has filled its memory with stamped pages
and freed a fragmenting pattern; measures; asks the guest's virtio-balloon
driver (QMP `balloon`) for half its RAM; waits until `query-balloon` reports
it; measures at once and SETTLE seconds later; deflates; lets the guest check
every stamp and rewrite all its memory; measures.  Each QEMU runs in a child
memory cgroup of the runner's own cgroup, and a measurement is the cgroup's
memory usage plus the number of 2 MiB ranges of guest RAM that are backed by
a huge page, read from the kernel (/proc/PID/pagemap and /proc/kpageflags).
See docs/vm.md.  Needs root (cgroup, kpageflags, tmpfs mount); only Python's
standard library.

  guest/run-vm.py [--mem MiB] [--backends anon,tmpfs,thpfs:whole-lazy,...]
                  [--fpr both|on|off] [--accel auto|tcg|kvm] [--out DIR]
                  [--trace FILE] [--check]

--check prints "N passed, N failed, N skipped" and exits 1 if any failed
(exit 0 with everything skipped where QEMU cannot run here).
"""
import argparse
import array
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HUGE = 2 << 20
PAGE = 4096
KPF_COMPOUND_HEAD = 1 << 15
KPF_COMPOUND_TAIL = 1 << 16
KPF_THP = 1 << 22
QEMU = "qemu-system-x86_64"
TRACE_EVENTS = ["virtio_balloon_to_target", "virtio_balloon_handle_output",
                "ram_block_discard_range", "virtqueue_pop"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Skip(Exception):
    pass


# ---------------------------------------------------------------- cgroup
class Cgroup:
    """A child memory cgroup under the runner's own one (v1 or v2)."""

    def __init__(self, name):
        v1 = "/sys/fs/cgroup/memory"
        own = None
        with open("/proc/self/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if os.path.isdir(v1) and "memory" in ctrls.split(","):
                    own = (v1, path, "memory.usage_in_bytes")
                elif ctrls == "" and own is None and not os.path.isdir(v1):
                    own = ("/sys/fs/cgroup", path, "memory.current")
        if own is None:
            raise Skip("no memory cgroup controller")
        root, path, self.usage_file = own
        self.dir = os.path.join(root + path, "%s-%d" % (name, os.getpid()))
        os.mkdir(self.dir)

    def usage(self):
        with open(os.path.join(self.dir, self.usage_file)) as f:
            return int(f.read())

    def add_self(self):
        """Run in the child between fork and exec (preexec_fn)."""
        with open(os.path.join(self.dir, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def remove(self):
        for _ in range(50):
            try:
                os.rmdir(self.dir)
                return
            except OSError:
                time.sleep(0.1)
        log("run-vm: could not remove cgroup %s" % self.dir)


def connect_unix(path, timeout, poll):
    """A stream socket connected to the unix socket at path, retried every
    poll seconds until it is there (QEMU makes it after starting); the last
    error once timeout seconds have passed."""
    deadline = time.time() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            if time.time() > deadline:
                raise
            time.sleep(poll)


# ---------------------------------------------------------------- QMP
class QMP:
    def __init__(self, path, timeout=30):
        self.sock = connect_unix(path, timeout, 0.1)
        self.buf = b""
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("QMP closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                continue
            if "error" in r:
                raise RuntimeError("QMP %s: %s" % (name, r["error"]))
            return r.get("return")


# ---------------------------------------------------------------- serial
class Console:
    """The guest's serial console: lines in (kept, and saved to a file),
    commands out."""

    def __init__(self, path, logfile, timeout=30):
        self.sock = connect_unix(path, timeout, 0.05)
        self.lines = []
        self.cond = threading.Condition()
        self.closed = False
        self.logf = open(logfile, "w")
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        buf = b""
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace").rstrip("\r")
                self.logf.write(text + "\n")
                self.logf.flush()
                with self.cond:
                    self.lines.append(text)
                    self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_for(self, prefix, timeout, start=0):
        """The first line from index start on that contains prefix;
        returns (line, index)."""
        deadline = time.time() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    if prefix in self.lines[i]:
                        return self.lines[i], i + 1
                    if "GM: FATAL" in self.lines[i]:
                        raise RuntimeError("guest: " + self.lines[i])
                    i += 1
                left = deadline - time.time()
                if left <= 0 or self.closed:
                    raise TimeoutError("guest did not print %r (last: %r)" %
                                       (prefix, self.lines[-3:]))
                self.cond.wait(left)

    def send(self, cmd):
        with self.cond:
            n = len(self.lines)
        self.sock.sendall(cmd.encode() + b"\n")
        return n


def fields(line):
    """'GM: X a=1 b=2.5' -> {'a': 1, 'b': 2.5}"""
    out = {}
    for k, v in re.findall(r"(\w+)=([-\d.]+)", line):
        out[k] = float(v) if "." in v else int(v)
    return out


# ---------------------------------------------------------------- kernel view
def find_ram_mapping(pid, ram_bytes, mem_path=None, addr=None):
    """(start, end, smaps fields) of QEMU's guest-RAM mapping."""
    best = None
    cur = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
            if m:
                cur = {"start": int(m.group(1), 16), "end": int(m.group(2), 16),
                       "perms": m.group(3), "path": m.group(4).strip()}
                continue
            k, _, v = line.partition(":")
            if cur is None:
                continue
            cur[k] = v.strip()
            if k != "VmFlags":
                continue
            size = cur["end"] - cur["start"]
            if addr is not None:
                ok = cur["start"] <= addr < cur["end"]
            elif mem_path is not None:
                ok = cur["path"] == mem_path
            else:
                ok = (size >= ram_bytes and "rw" in cur["perms"] and
                      " hg" in " " + v and cur["path"] == "")
            if ok and (best is None or size < best["end"] - best["start"]):
                best = cur
    if best is None:
        raise RuntimeError("guest RAM mapping not found in /proc/%d/smaps" % pid)
    start = addr if addr is not None else best["start"]
    return start, start + ram_bytes, best


def huge_ranges(pid, start, ram_bytes):
    """Number of 2 MiB ranges of [start, start+ram_bytes) in the address
    space of process pid (or "self") that are backed by one huge page (every
    4 KiB page present, frames contiguous from a 2 MiB-aligned compound head
    flagged THP, the other 511 its tails), and the number of present 4 KiB
    pages."""
    npages = ram_bytes // PAGE
    pm = array.array("Q")
    with open("/proc/%s/pagemap" % pid, "rb") as f:
        f.seek(start // PAGE * 8)
        pm.frombytes(f.read(npages * 8))
    if len(pm) != npages:
        raise RuntimeError("short pagemap read")
    present = 0
    huge = 0
    pfn_mask = (1 << 55) - 1
    with open("/proc/kpageflags", "rb") as kf:
        for r in range(ram_bytes // HUGE):
            ents = pm[r * 512:(r + 1) * 512]
            n = sum(1 for e in ents if e >> 63)
            present += n
            if n != 512:
                continue
            pfn0 = ents[0] & pfn_mask
            if pfn0 % 512 or any((e & pfn_mask) != pfn0 + i for i, e in enumerate(ents)):
                continue
            kf.seek(pfn0 * 8)
            fl = array.array("Q")
            fl.frombytes(kf.read(512 * 8))
            if (fl[0] & (KPF_COMPOUND_HEAD | KPF_THP)) != (KPF_COMPOUND_HEAD | KPF_THP):
                continue
            if all((x & (KPF_COMPOUND_TAIL | KPF_THP)) == (KPF_COMPOUND_TAIL | KPF_THP)
                   for x in fl[1:]):
                huge += 1
    return huge, present


def huge_ranges_file(path, size):
    """huge_ranges() of a tmpfs file's own pages, whether QEMU has them
    mapped or not: maps the file read-only here, faults in only its data
    (SEEK_DATA/SEEK_HOLE, so no hole gets a page), reads our pagemap."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap " + path)
        try:
            off = 0
            while off < size:
                try:
                    data = os.lseek(fd, off, os.SEEK_DATA)
                except OSError:
                    break
                hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
                for o in range(data, hole, PAGE):
                    ctypes.string_at(addr + o, 1)
                off = hole
            return huge_ranges("self", addr, size)
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def pmd_mapped_ranges(pid, start, end):
    """2 MiB ranges of [start, end) mapped by a PMD (smaps AnonHugePages,
    ShmemPmdMapped, FilePmdMapped summed over the VMAs inside: thpfs's
    MADV_NOHUGEPAGE marks cut its view into many)."""
    kb = 0
    inside = False
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                inside = int(m.group(1), 16) < end and int(m.group(2), 16) > start
                continue
            if inside:
                k, _, v = line.partition(":")
                if k in ("AnonHugePages", "ShmemPmdMapped", "FilePmdMapped"):
                    kb += int(v.split()[0])
    return kb * 1024 // HUGE


# ---------------------------------------------------------------- accelerator
def kvm_works(kernel, timeout=10):
    """Boots the guest kernel under -accel kvm until it prints its banner on
    the serial console; a PVM /dev/kvm hangs in the decompressor."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "no usable /dev/kvm"
    p = subprocess.Popen([QEMU, "-nodefaults", "-no-user-config", "-accel", "kvm",
                          "-m", "128M", "-display", "none", "-serial", "stdio",
                          "-no-reboot", "-kernel", kernel,
                          "-append", "console=ttyS0 earlyprintk=ttyS0 panic=-1"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    out = b""
    deadline = time.time() + timeout
    ok = False
    try:
        while time.time() < deadline:
            r, _, _ = select.select([p.stdout], [], [], 0.2)
            if r:
                data = os.read(p.stdout.fileno(), 4096)
                if not data:
                    break
                out += data
                if b"Linux version" in out:
                    ok = True
                    break
    finally:
        p.kill()
        p.wait()
    if ok:
        return True, "kvm booted the guest kernel"
    return False, "kvm probe: no kernel banner within %ds (%s)" % (
        timeout, out.decode(errors="replace").strip().splitlines()[-1:] or "no output")


# ---------------------------------------------------------------- trace
def normalise_trace(raw, out, ram_base, ram_bytes, ram_name):
    """Turns QEMU's log-backend trace into the text format of docs/vm.md:
    'inflate N' / 'deflate N' when the host sets the balloon to N bytes,
    'req' before the discards of each virtqueue element, 'd OFF LEN' per
    discard of guest RAM (offset into the RAM).  Returns the discard count."""
    n = 0
    last_pages = 0
    pending_req = False
    with open(raw) as f, open(out, "w") as o:
        o.write("# thpfs-vm-trace v1: guest RAM %d bytes; offsets and lengths in hex bytes\n" % ram_bytes)
        o.write("ram %#x\n" % ram_bytes)
        for line in f:
            m = re.search(r"virtio_balloon_to_target balloon target: (0x[0-9a-f]+|\d+) num_pages: (\d+)", line)
            if m:
                pages = int(m.group(2))
                if pages != last_pages:
                    o.write("%s %#x\n" % ("inflate" if pages > last_pages else "deflate", pages * PAGE))
                last_pages = pages
                continue
            if "virtqueue_pop" in line:
                pending_req = True
                continue
            m = re.search(r"ram_block_discard_range (\S+)@0x([0-9a-f]+) \+ 0x([0-9a-f]+): madvise: (\d) fallocate: (\d) ret: (-?\d+)", line)
            if m and m.group(1) == ram_name:
                off = int(m.group(2), 16) - ram_base
                if 0 <= off < ram_bytes:
                    if pending_req:
                        o.write("req\n")
                        pending_req = False
                    o.write("d %#x %#x\n" % (off, int(m.group(3), 16)))
                    n += 1
    return n


# ---------------------------------------------------------------- one run
class Backend:
    def __init__(self, spec, ram_bytes, root):
        self.spec = spec
        self.kind, _, self.policy = spec.partition(":")
        self.ram_bytes = ram_bytes
        self.root = root
        self.mnt = None
        self.mem_path = None
        self.env = dict(os.environ)
        self.stats_path = None

    def setup(self, tmp):
        size = self.ram_bytes
        if self.kind == "anon":
            return []
        if self.kind == "tmpfs":
            self.mnt = os.path.join(tmp, "tmpfs")
            os.mkdir(self.mnt)
            subprocess.run(["mount", "-t", "tmpfs", "-o",
                            "huge=always,size=%dk,mode=700" % ((size + HUGE * 4) // 1024),
                            "thpfs-vm", self.mnt], check=True)
            self.mem_path = os.path.join(self.mnt, "ram")
        elif self.kind == "thpfs":
            lib = os.path.join(self.root, "build", "libthpfs-qemu.so")
            if not os.path.exists(lib):
                raise Skip("%s not built" % lib)
            self.mem_path = "/thpfs-qemu/ram"
            self.stats_path = os.path.join(tmp, "thpfs.stats")
            self.env["LD_PRELOAD"] = lib
            self.env["THPFS_QEMU_PREFIX"] = "/thpfs-qemu/"
            opts = "size=%d" % (size + 64 * HUGE)
            if self.policy:
                opts += ",policy=" + self.policy
            self.env["THPFS_QEMU_OPTIONS"] = opts
            self.env["THPFS_QEMU_STATS"] = self.stats_path
        else:
            raise Skip("unknown backend %s" % self.kind)
        return ["-object", "memory-backend-file,id=ram0,size=%d,mem-path=%s,share=on,align=2M"
                % (size, self.mem_path), "-machine", "memory-backend=ram0"]

    def ram_name(self):
        return "pc.ram" if self.kind == "anon" else "ram0"

    def ram_addr(self):
        """Where the RAM is mapped when /proc cannot tell (thpfs)."""
        if self.kind != "thpfs":
            return None
        try:
            with open(self.stats_path) as f:
                for line in f:
                    if line.startswith("map_addr"):
                        return int(line.split()[1], 0)
        except OSError:
            pass
        return None

    def teardown(self):
        if self.mem_path and self.kind == "tmpfs":
            try:
                os.unlink(self.mem_path)
            except OSError:
                pass
        if self.mnt:
            subprocess.run(["umount", self.mnt])


def run_one(args, backend_spec, fpr, accel, guest_dir, trace_raw=None):
    ram = args.mem << 20
    name = backend_spec.replace(":", "-") + ("+fpr" if fpr else "")
    res = {"backend": backend_spec, "fpr": fpr, "accel": accel, "mem_mib": args.mem,
           "name": name, "points": {}}
    tmp = tempfile.mkdtemp(prefix="thpfs-vm-")
    be = Backend(backend_spec, ram, args.root)
    cg = None
    proc = None
    try:
        mem_args = be.setup(tmp)
        cg = Cgroup("vm-" + re.sub(r"[^A-Za-z0-9+-]", "-", name))
        ser = os.path.join(tmp, "serial.sock")
        qmp_path = os.path.join(tmp, "qmp.sock")
        cmd = [QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
               "-accel", "tcg,tb-size=128" if accel == "tcg" else "kvm",
               "-m", "%dM" % args.mem, "-smp", "1",
               "-kernel", os.path.join(guest_dir, "vmlinuz"),
               "-initrd", os.path.join(guest_dir, "initramfs.cpio.gz"),
               "-append", "console=ttyS0 quiet loglevel=3 panic=-1 gm.ram_mb=%d" % args.mem,
               "-chardev", "socket,id=ser0,path=%s,server=on,wait=on" % ser,
               "-serial", "chardev:ser0",
               "-qmp", "unix:%s,server=on,wait=off" % qmp_path,
               "-device", "virtio-balloon-pci,id=balloon0%s" %
               (",free-page-reporting=on" if fpr else "")] + mem_args
        if trace_raw:
            evf = os.path.join(tmp, "events")
            with open(evf, "w") as f:
                f.write("\n".join(TRACE_EVENTS) + "\n")
            cmd += ["-trace", "events=" + evf, "-D", trace_raw]
        qlog = open(os.path.join(args.out, name + ".qemu.log"), "w")
        t_boot = time.time()
        proc = subprocess.Popen(cmd, env=be.env, stdin=subprocess.DEVNULL, stdout=qlog,
                                stderr=subprocess.STDOUT, preexec_fn=cg.add_self)
        try:
            con = Console(ser, os.path.join(args.out, name + ".console"))
        except OSError:
            proc.wait(timeout=10)
            with open(qlog.name) as f:
                raise RuntimeError("QEMU did not start: " + f.read().strip()[-500:])
        qmp = QMP(qmp_path)
        ready, pos = con.wait_for("GM: READY", args.timeout)
        res["boot_s"] = round(time.time() - t_boot, 1)
        res["guest"] = fields(ready)
        start, end, smaps = find_ram_mapping(proc.pid, ram, be.mem_path if be.kind == "tmpfs" else None,
                                             be.ram_addr())
        res["ram_base"] = start

        def measure(point):
            huge, present = huge_ranges(proc.pid, start, ram)
            if be.kind == "tmpfs":  # the file's pages, mapped by QEMU or not
                huge, present = huge_ranges_file(be.mem_path, ram)
            bal = qmp.cmd("query-balloon")["actual"]
            m = {"t": round(time.time() - t_boot, 1), "cgroup": cg.usage(), "huge": huge,
                 "present_mib": present * PAGE >> 20, "pmd_mapped": pmd_mapped_ranges(proc.pid, start, end),
                 "balloon_mib": (ram - bal) >> 20}
            if be.stats_path:
                m["thpfs"] = read_stats(be.stats_path)
            res["points"][point] = m
            log("  %-10s cgroup %5d MiB  huge %4d/%d  pmd-mapped %4d  present %5d MiB  balloon %4d MiB" %
                (point, m["cgroup"] >> 20, huge, ram // HUGE, m["pmd_mapped"], m["present_mib"],
                 m["balloon_mib"]))
            return m

        if fpr:
            measure("ready")
            time.sleep(args.fpr_wait)
            res["fpr_wait"] = args.fpr_wait
        measure("before")

        target = ram - ram * args.target // 100
        t0 = time.time()
        qmp.cmd("balloon", value=target)
        res["inflate_s"], res["inflate_reached"] = wait_balloon(qmp, target, args.inflate_timeout)
        measure("inflated")
        time.sleep(args.settle)
        measure("settled")
        if be.stats_path:  # the host asks thpfs for the memory (thpfs_reclaim)
            t1 = time.time()
            req = be.stats_path + ".reclaim"
            with open(req + ".tmp", "w") as f:
                f.write("0\n")
            os.rename(req + ".tmp", req)
            while os.path.exists(req) and time.time() - t1 < 120:
                time.sleep(0.05)
            res["reclaim_s"] = round(time.time() - t1, 2)
            measure("reclaimed")
        pos = con.send("chase")
        line, pos = con.wait_for("GM: CHASE", 300, pos)
        res["chase_inflated_ns"] = fields(line)["chase_ns"]

        qmp.cmd("balloon", value=ram)
        res["deflate_s"], res["deflate_reached"] = wait_balloon(qmp, ram, args.inflate_timeout)
        pos = con.send("rewrite")
        line, pos = con.wait_for("GM: REWRITE", args.timeout, pos)
        rw = fields(line)
        res["stamp_errors"] = rw["errors"]
        res["pages_checked"] = rw["pages"]
        res["chase_after_ns"] = rw["chase_ns"]
        res["rewrite_s"] = rw["rewrite_s"]
        measure("after")
        time.sleep(args.settle)
        measure("after_settled")
        res["chase_before_ns"] = res["guest"]["chase_ns"]
        pos = con.send("quit")
        try:
            con.wait_for("GM: BYE", 30, pos)
            proc.wait(timeout=30)
        except (TimeoutError, subprocess.TimeoutExpired):
            qmp.cmd("quit")
        p = res["points"]
        ballooned = p["inflated"]["balloon_mib"] << 20
        if ballooned:
            res["back_at_once"] = (p["before"]["cgroup"] - p["inflated"]["cgroup"]) / ballooned
            res["back_settled"] = (p["before"]["cgroup"] - p["settled"]["cgroup"]) / ballooned
            if "ready" in p:  # free page reporting before the balloon
                res["fpr_back_mib"] = (p["ready"]["cgroup"] - p["before"]["cgroup"]) >> 20
                res["guest_freed_mib"] = res["guest"]["freed_mib"]
            if "reclaimed" in p:
                res["back_reclaimed"] = (p["before"]["cgroup"] - p["reclaimed"]["cgroup"]) / ballooned
        if be.stats_path:
            res["thpfs_exit"] = read_stats(be.stats_path)
        res["ok"] = True
    except Skip:
        raise
    except Exception as e:  # report the run as failed, keep going
        res["ok"] = False
        res["error"] = "%s: %s" % (type(e).__name__, e)
        log("run-vm: %s: %s" % (name, res["error"]))
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        be.teardown()
        if cg:
            cg.remove()
        shutil.rmtree(tmp, ignore_errors=True)
    if trace_raw and res.get("ok"):
        res["trace_discards"] = normalise_trace(trace_raw, args.trace, res["ram_base"], ram,
                                                be.ram_name())
    return res


def read_stats(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2:
                    try:
                        out[parts[0].rstrip(":")] = int(parts[1], 0)
                    except ValueError:
                        pass
    except OSError:
        pass
    return out


def wait_balloon(qmp, target, timeout):
    """Seconds until query-balloon reports target (within 1 MiB), and
    whether it got there before timeout or before the guest stalled."""
    t0 = time.time()
    last, last_change = None, t0
    while True:
        actual = qmp.cmd("query-balloon")["actual"]
        now = time.time()
        if abs(actual - target) <= (1 << 20):
            return round(now - t0, 2), True
        if actual != last:
            last, last_change = actual, now
        if now - t0 > timeout or now - last_change > 20:
            log("run-vm: balloon stuck at %d MiB (target %d MiB)" % (actual >> 20, target >> 20))
            return round(now - t0, 2), False
        time.sleep(0.05)


# ---------------------------------------------------------------- report
def table(results):
    hdr = ("%-20s %6s %5s %7s %7s %7s  %-26s %6s %-15s" %
           ("backend", "infl s", "MiB", "at once", "+settle", "asked", "huge bef/infl/asked/aft/+s",
            "errors", "chase ns b/i/a"))
    lines = [hdr, "-" * len(hdr)]
    for r in results:
        if not r.get("ok"):
            lines.append("%-20s FAILED: %s" % (r["name"], r.get("error", "?")))
            continue
        p = r["points"]
        asked = p.get("reclaimed", p["settled"])
        lines.append("%-20s %6.1f %5d %6.1f%% %6.1f%% %7s  %4d/%4d/%4d/%4d/%4d %8d %4.0f/%4.0f/%4.0f" % (
            r["name"], r["inflate_s"], p["inflated"]["balloon_mib"],
            100 * r.get("back_at_once", 0), 100 * r.get("back_settled", 0),
            "%.1f%%" % (100 * r["back_reclaimed"]) if "back_reclaimed" in r else "-",
            p["before"]["huge"], p["inflated"]["huge"], asked["huge"], p["after"]["huge"],
            p["after_settled"]["huge"], r["stamp_errors"], r["chase_before_ns"],
            r["chase_inflated_ns"], r["chase_after_ns"]))
    for r in results:
        if r.get("ok") and "fpr_back_mib" in r:
            lines.append("%s: free page reporting gave back %d MiB within %.0f s of the guest freeing %d MiB"
                         " (%d MiB free in the guest)" % (r["name"], r["fpr_back_mib"], r.get("fpr_wait", 0),
                                                         r["guest_freed_mib"], r["guest"]["memfree_mib"]))
    if results:
        r = results[0]
        lines.append("(%d MiB guest, %s; huge = 2 MiB ranges of %d backed by a huge page, from "
                     "pagemap + kpageflags; asked = after thpfs_reclaim)" %
                     (r.get("mem_mib", 0), r.get("accel", "?"), r.get("mem_mib", 0) // 2))
    return "\n".join(lines)


def plot(results, out_dir, ram):
    ok = [r for r in results if r.get("ok")]
    if not ok or not shutil.which("gnuplot"):
        return None
    dat = os.path.join(out_dir, "vm.dat")
    with open(dat, "w") as f:
        f.write("# name back_at_once back_settled huge_before huge_inflated huge_settled huge_after back_asked\n")
        for r in ok:
            p = r["points"]
            f.write('"%s" %.2f %.2f %.1f %.1f %.1f %.1f %.2f\n' % (
                r["name"], 100 * r.get("back_at_once", 0), 100 * r.get("back_settled", 0),
                *[100.0 * p[k]["huge"] / (ram // HUGE) for k in ("before", "inflated", "settled", "after_settled")],
                100 * r.get("back_reclaimed", r.get("back_settled", 0))))
    png = os.path.join(out_dir, "vm.png")
    gp = """set terminal pngcairo size 1100,500 noenhanced
set output '%s'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0:105]
set ylabel '%%'
set xtics rotate by -20
set key outside right
set title 'Real guest balloon (%d MiB guest, half ballooned): memory back, 2 MiB ranges huge'
plot '%s' using 2:xtic(1) title 'back at once', '' using 8 title 'back when asked', \\
     '' using 4 title 'huge before', '' using 5 title 'huge inflated', '' using 7 title 'huge after rewrite (+settle)'
""" % (png, ram >> 20, dat)
    r = subprocess.run(["gnuplot"], input=gp.encode(), capture_output=True)
    if r.returncode:
        log("run-vm: gnuplot: " + r.stderr.decode())
        return None
    return png


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mem", type=int, default=1024, help="guest RAM in MiB")
    ap.add_argument("--backends", default="anon,tmpfs,thpfs:whole-lazy,thpfs:split,thpfs:lazy")
    ap.add_argument("--fpr", default="both", choices=["both", "on", "off"],
                    help="free-page-reporting on the balloon device")
    ap.add_argument("--fpr-backends", default=None,
                    help="backends of the free-page-reporting runs (default: all)")
    ap.add_argument("--accel", default="auto", choices=["auto", "tcg", "kvm"])
    ap.add_argument("--target", type=int, default=50, help="%% of RAM to balloon")
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--fpr-wait", type=float, default=12.0)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--inflate-timeout", type=float, default=600.0)
    ap.add_argument("--out", default="build/vm")
    ap.add_argument("--guest", default="build/guest")
    ap.add_argument("--trace", default=None,
                    help="record the first run's balloon requests into FILE (docs/vm.md format)")
    ap.add_argument("--check", action="store_true", help="assert and print N passed, N failed, N skipped")
    args = ap.parse_args()
    args.root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.makedirs(args.out, exist_ok=True)

    backends = [b for b in args.backends.split(",") if b]
    runs = []
    if args.fpr in ("both", "off"):
        runs += [(b, False) for b in backends]
    if args.fpr in ("both", "on"):
        fb = args.fpr_backends.split(",") if args.fpr_backends else backends
        runs += [(b, True) for b in fb if b]

    why_skip = None
    if os.geteuid() != 0:
        why_skip = "not root (cgroup, /proc/kpageflags, tmpfs mount)"
    elif not shutil.which(QEMU):
        why_skip = QEMU + " not installed (scripts/deps.sh vm)"
    elif not os.path.exists(os.path.join(args.guest, "initramfs.cpio.gz")):
        why_skip = "no guest image in %s (guest/build-image.sh)" % args.guest
    if why_skip:
        log("run-vm: skipped: " + why_skip)
        if args.check:
            print("0 passed, 0 failed, %d skipped" % len(runs))
        return 0

    accel = args.accel
    if accel == "auto":
        ok, why = kvm_works(os.path.join(args.guest, "vmlinuz"))
        accel = "kvm" if ok else "tcg"
        log("run-vm: accelerator %s (%s)" % (accel, why))
    else:
        log("run-vm: accelerator %s (as asked)" % accel)

    results = []
    skipped = 0
    for i, (b, fpr) in enumerate(runs):
        log("run-vm: %s%s, %d MiB guest, %s" % (b, " free-page-reporting=on" if fpr else "", args.mem, accel))
        raw = None
        if args.trace and i == 0:
            raw = os.path.join(args.out, "trace.raw")
        try:
            results.append(run_one(args, b, fpr, accel, args.guest, raw))
        except Skip as e:
            log("run-vm: %s skipped: %s" % (b, e))
            skipped += 1
            results.append({"name": b + ("+fpr" if fpr else ""), "backend": b, "fpr": fpr,
                            "skipped": str(e), "ok": None})
    shown = [r for r in results if r.get("ok") is not None]
    print(table(shown))
    with open(os.path.join(args.out, "vm.json"), "w") as f:
        json.dump({"mem_mib": args.mem, "accel": accel, "target_pct": args.target,
                   "settle_s": args.settle, "results": results}, f, indent=1)
    png = plot(shown, args.out, args.mem << 20)
    log("run-vm: wrote %s%s" % (os.path.join(args.out, "vm.json"), ", " + png if png else ""))
    if not args.check:
        return 0 if all(r.get("ok") for r in shown) else 1
    return check(results, skipped, args.mem << 20)


def check(results, skipped, ram):
    passed = failed = 0

    def expect(cond, what):
        nonlocal passed, failed
        if cond:
            passed += 1
        else:
            failed += 1
        print("%s: %s" % ("ok" if cond else "FAIL", what))

    for r in results:
        if r.get("ok") is None:
            continue
        n = r["name"]
        expect(r.get("ok"), "%s: booted, ballooned, deflated, rewrote (%s)" % (n, r.get("error", "")))
        if not r.get("ok"):
            continue
        expect(r["inflate_reached"] and r["deflate_reached"], "%s: query-balloon reached the targets" % n)
        expect(r["stamp_errors"] == 0, "%s: %d stamp errors in %d pages" % (n, r["stamp_errors"], r["pages_checked"]))
        kind, _, pol = r["backend"].partition(":")
        at_once = r.get("back_at_once", 0)
        if kind == "tmpfs" and not r["fpr"]:
            expect(at_once >= 0.90, "%s: %.1f%% of the ballooned memory back at once (>= 90%%)" % (n, 100 * at_once))
        if kind == "thpfs" and pol == "split" and not r["fpr"]:
            expect(at_once >= 0.95, "%s: %.1f%% of the ballooned memory back at once (>= 95%%)" % (n, 100 * at_once))
        if kind == "thpfs" and pol in ("whole-lazy", "lazy") and not r["fpr"]:
            asked = r.get("back_reclaimed", 0)
            expect(asked >= 0.95, "%s: %.1f%% of the ballooned memory back when the host asks (>= 95%%)"
                   % (n, 100 * asked))
        if kind == "thpfs" and pol == "whole-lazy" and not r["fpr"]:
            # Ranges the guest never had huge (before inflating) cannot be
            # asked back; judge against those it had, after the rewrite has
            # settled (the collapse thread works during the settle time).
            pts = r["points"]
            had = max(pts["before"]["huge"], 1)
            after = max(pts["after"]["huge"], pts.get("after_settled", pts["after"])["huge"])
            expect(after >= 0.95 * had,
                   "%s: %d of the %d 2 MiB ranges huge before inflating are huge again after deflate"
                   " + rewrite (%.1f%%, >= 95%%; %.1f%% of all %d ranges)"
                   % (n, after, had, 100.0 * after / had, 100.0 * after / (ram // HUGE), ram // HUGE))
        if r["fpr"] and kind == "thpfs":
            expect(r.get("fpr_back_mib", 0) > 0, "%s: free page reporting gave back %d MiB before the balloon"
                   % (n, r.get("fpr_back_mib", 0)))
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
