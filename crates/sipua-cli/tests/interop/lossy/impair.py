#!/usr/bin/env python3
"""netem-like userspace link impairer for the lossy-network interop lab (lab.sh beside this).

The kernel here has no sch_netem, so `tc qdisc ... netem` is unavailable. Instead lab.sh
builds a router namespace whose policy routing sends each direction of a<->b traffic into
its own TUN device; this program reads every IP packet from a TUN device, impairs it and
writes it back into the same device, where the router's main table forwards it on.

Per packet, independently (like netem): --loss P% dropped; else --duplicate P% sent twice
(each copy delayed independently); each copy --reorder P% sent at once (skipping the
delay, so it overtakes delayed ones), else held for --delay MS +- uniform --jitter MS
(never negative). --seed N makes every direction's random.Random reproducible.

Stats JSON (per device: received, dropped, duplicated, reordered, sent, kernel_tx_dropped =
TUN queue overflow in the kernel when we are too slow, ...) go to --stats
FILE every second and on SIGTERM/SIGINT, after which it exits 0. SIGUSR1 zeroes them and
reseeds (lab.sh does so once its own probe has crossed, so tests see a fresh sequence).

Usage: impair.py [--loss P] [--duplicate P] [--reorder P] [--delay MS] [--jitter MS]
                 [--seed N] [--stats FILE] TUN [TUN...]     (python3 stdlib only; root)
"""
import argparse
import errno
import fcntl
import heapq
import json
import os
import random
import selectors
import signal
import socket
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_QUEUE = 10_000       # packets waiting in the delay heap before new ones are dropped
MAX_PACKET = 65535       # read size: any IP packet, even if offloads ever hand us one
READ_BURST = 256         # packets drained from one device per wake-up


def log(msg):
    print(f"impair[{os.getpid()}] {time.strftime('%H:%M:%S')}: {msg}", file=sys.stderr, flush=True)


def percent(text):
    value = float(text)
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"{text}: a percentage must be within 0..100")
    return value


def millis(text):
    value = float(text)
    if value < 0.0:
        raise argparse.ArgumentTypeError(f"{text}: must not be negative")
    return value


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


class Direction:
    def __init__(self, name, fd, seed):
        self.name, self.fd = name, fd
        self.seed, self.rng, self.kernel_base = seed, random.Random(), 0
        self.reset()

    def reset(self):
        """Zero the counters and restart the random sequence (reproducible from here on)."""
        self.rng.seed(None if self.seed is None else f"{self.seed}/{self.name}")
        self.stats = dict(received=0, dropped=0, duplicated=0, reordered=0, sent=0,
                          overflow=0, write_errors=0, read_errors=0, bytes_received=0)
        self.kernel_base += max(0, self.kernel_drops())

    def kernel_drops(self):
        """Packets the kernel dropped because its queue to us was full (we were too slow)."""
        try:
            with open(f"/sys/class/net/{self.name}/statistics/tx_dropped") as f:
                return int(f.read()) - self.kernel_base
        except (OSError, ValueError):
            return -1


class Impairer:
    def __init__(self, args, dirs):
        self.args, self.dirs = args, dirs
        self.heap = []  # (due monotonic time, seq, direction, packet)
        self.seq = 0

    def handle(self, d, packet):
        a, rng, st = self.args, d.rng, d.stats
        st["received"] += 1
        st["bytes_received"] += len(packet)
        if a.loss and rng.random() * 100.0 < a.loss:
            st["dropped"] += 1
            return
        copies = 1
        if a.duplicate and rng.random() * 100.0 < a.duplicate:
            copies = 2
            st["duplicated"] += 1
        now = time.monotonic()
        for _ in range(copies):
            if a.reorder and rng.random() * 100.0 < a.reorder:
                st["reordered"] += 1
                self.send(d, packet)
                continue
            delay = a.delay + (rng.uniform(-a.jitter, a.jitter) if a.jitter else 0.0)
            if delay <= 0.0:
                self.send(d, packet)
            elif len(self.heap) >= MAX_QUEUE:
                st["dropped"] += 1
                st["overflow"] += 1
            else:
                self.seq += 1
                heapq.heappush(self.heap, (now + delay / 1000.0, self.seq, d, packet))

    def send(self, d, packet):
        try:
            os.write(d.fd, packet)
            d.stats["sent"] += 1
        except OSError as e:
            d.stats["write_errors"] += 1
            if d.stats["write_errors"] <= 10:
                log(f"{d.name}: write of {len(packet)} bytes failed: {e}")

    def flush_due(self):
        now = time.monotonic()
        while self.heap and self.heap[0][0] <= now:
            _, _, d, packet = heapq.heappop(self.heap)
            self.send(d, packet)

    def read_some(self, d):
        for _ in range(READ_BURST):
            try:
                packet = os.read(d.fd, MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                d.stats["read_errors"] += 1
                if d.stats["read_errors"] <= 10:
                    log(f"{d.name}: read failed: {e}")
                if e.errno in (errno.EBADFD, errno.EBADF, errno.ENODEV) or d.stats["read_errors"] > 10_000:
                    raise
                return
            if packet:
                self.handle(d, packet)

    def snapshot(self):
        a = self.args
        return {"config": dict(loss=a.loss, duplicate=a.duplicate, reorder=a.reorder, delay_ms=a.delay,
                               jitter_ms=a.jitter, seed=a.seed),
                "queued": len(self.heap), "pid": os.getpid(),
                "directions": {d.name: dict(d.stats, kernel_tx_dropped=d.kernel_drops()) for d in self.dirs}}

    def write_stats(self):
        if not self.args.stats:
            return
        tmp = f"{self.args.stats}.tmp{os.getpid()}"
        try:
            with open(tmp, "w") as f:
                json.dump(self.snapshot(), f, indent=1, sort_keys=True)
                f.write("\n")
            os.replace(tmp, self.args.stats)
        except OSError as e:
            log(f"cannot write stats to {self.args.stats}: {e}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--loss", type=percent, default=0.0, help="percent of packets dropped")
    p.add_argument("--duplicate", type=percent, default=0.0, help="percent of packets sent twice")
    p.add_argument("--reorder", type=percent, default=0.0, help="percent sent at once, skipping the delay")
    p.add_argument("--delay", type=millis, default=0.0, help="one-way delay in ms")
    p.add_argument("--jitter", type=millis, default=0.0, help="uniform +- jitter in ms")
    p.add_argument("--seed", type=int, default=None, help="seed for reproducible impairment")
    p.add_argument("--stats", default=None, help="JSON stats file (rewritten every second)")
    p.add_argument("tun", nargs="+", help="TUN device names (created if absent, e.g. by `ip tuntap`)")
    args = p.parse_args()

    dirs = [Direction(name, open_tun(name), args.seed) for name in args.tun]
    imp = Impairer(args, dirs)
    stop = []
    wake_r, wake_w = socket.socketpair()
    for s in (wake_r, wake_w):
        s.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    resets = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: resets.append(signum))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    sel = selectors.DefaultSelector()
    for d in dirs:
        sel.register(d.fd, selectors.EVENT_READ, d)
    sel.register(wake_r, selectors.EVENT_READ, None)
    log(f"impairing {', '.join(args.tun)}: {imp.snapshot()['config']}")
    imp.write_stats()
    next_stats = time.monotonic() + 1.0
    status = 0
    while not stop:
        try:
            now = time.monotonic()
            timeout = next_stats - now
            if imp.heap:
                timeout = min(timeout, imp.heap[0][0] - now)
            for key, _ in sel.select(max(0.0, timeout)):
                if key.data is None:
                    try:
                        wake_r.recv(512)
                    except OSError:
                        pass
                else:
                    imp.read_some(key.data)
            imp.flush_due()
            if resets:
                resets.clear()
                for d in dirs:
                    d.reset()
                next_stats = 0.0
            if time.monotonic() >= next_stats:
                imp.write_stats()
                next_stats = time.monotonic() + 1.0
        except OSError as e:  # a device vanished (namespace deleted under us): give up cleanly
            log(f"fatal device error: {e}")
            status = 1
            break
        except Exception as e:  # never let one odd packet or bug kill the link
            log(f"unexpected {type(e).__name__}: {e}")
            time.sleep(0.01)
    imp.write_stats()
    log(f"stopping ({'signal ' + str(stop[0]) if stop else 'error'}), "
        f"{len(imp.heap)} packets still queued: {json.dumps(imp.snapshot()['directions'])}")
    return status


if __name__ == "__main__":
    sys.exit(main())
