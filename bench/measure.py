#!/usr/bin/env python3
"""bench/run's helpers (timing with wait4, stats, log parsing, the table). Not a public tool."""
import json
import os
import statistics
import subprocess
import sys
import time


def run_once(argv, env=None):
    """Wall ms, user+sys CPU ms and peak RSS KiB of argv, run under GNU time: RSS is its %M
    (python's own ru_maxrss would leak into a child it spawns directly); wall and CPU come from
    wait4 (microseconds rather than %e/%U/%S's 10 ms) and include GNU time's own start, which the
    `true` floor, measured the same way, shows."""
    rss_file = f"/tmp/dpsd-bench-rss.{os.getpid()}"
    argv = ["/usr/bin/time", "-f", "%M", "-o", rss_file] + argv
    devnull = os.open(os.devnull, os.O_RDWR)
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env if env is not None else os.environ,
                         file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0),
                                       (os.POSIX_SPAWN_DUP2, devnull, 1),
                                       (os.POSIX_SPAWN_DUP2, devnull, 2)])
    _, status, ru = os.wait4(pid, 0)
    wall = (time.perf_counter() - t0) * 1000
    os.close(devnull)
    code = os.waitstatus_to_exitcode(status)
    with open(rss_file) as f:
        rss = int(f.read().split()[-1])
    os.unlink(rss_file)
    return {"wall": wall, "cpu": (ru.ru_utime + ru.ru_stime) * 1000, "rss": rss, "code": code}


def cmd_measure(out, runs, warmup, argv):
    results = []
    for i in range(warmup + runs):
        r = run_once(argv)
        if r["code"] != 0:
            sys.exit(f"measure: {' '.join(argv)} exited {r['code']}")
        if i >= warmup:
            results.append(r)
    json.dump(results, open(out, "w"))


def stats(values):
    return statistics.median(values), min(values), max(values)


def fmt(values, unit, digits=1, shift=0.0):
    vals = [v - shift for v in values]
    med, lo, hi = stats(vals)
    return f"{med:.{digits}f} {unit} ({lo:.{digits}f}-{hi:.{digits}f})"


def load(path):
    return json.load(open(path))


def packet_sequence(log, client):
    events = [json.loads(l) for l in open(log) if l.strip()]
    events = [e for e in events if e.get("client_id") == client]
    last_connect = max(i for i, e in enumerate(events) if e["event"] == "connect")
    session = events[last_connect:]
    t0 = session[0]["t"]
    lines = []
    for e in session:
        what = e["event"]
        if what in ("subscribe", "publish", "reply"):
            what += " " + e.get("topic", "")
        lines.append(f"  +{e['t'] - t0:4d} ms  {what}")
    publishes = sum(1 for e in session if e["event"] == "publish")
    unsub = sum(1 for e in session if e["event"] == "unsubscribe")
    return lines, publishes, unsub


def strace_summary(path):
    """(total calls, {syscall: calls}) from `strace -c` output."""
    calls = {}
    total = 0
    for line in open(path):
        parts = line.split()
        if not parts or parts[0].startswith(("%", "-")):
            continue
        if parts[-1] == "total":
            nums = [p for p in parts[:-1]]
            total = int(nums[3]) if len(nums) >= 4 else 0
            continue
        # % time, seconds, usecs/call, calls, [errors], syscall
        try:
            calls[parts[-1]] = int(parts[3])
        except (ValueError, IndexError):
            pass
    return (total or sum(calls.values())), calls


def proc_status(path):
    out = {}
    for line in open(path):
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def cmd_report(d):
    imm, poll = load(f"{d}/imm.json"), load(f"{d}/poll.json")
    tls, true_ = load(f"{d}/tls.json"), load(f"{d}/true.json")
    retry_ms = 1000.0
    tls_med = stats([r["wall"] for r in tls])[0]
    true_med = stats([r["wall"] for r in true_])[0]
    imm_med = stats([r["wall"] for r in imm])[0]
    poll_above = stats([r["wall"] - retry_ms for r in poll])[0]
    rss_mib = lambda rs: [r["rss"] / 1024 for r in rs]
    cpu = lambda rs: [r["cpu"] for r in rs]
    runs = len(imm)
    rows = []

    def row(metric, value, floor, target, ok):
        rows.append((metric, value, floor, target, ("yes" if ok else "NO") if ok is not None else ""))

    imm_rss = stats(rss_mib(imm))[0]
    imm_cpu = stats(cpu(imm))[0]
    row("--once immediate: wall", fmt([r["wall"] for r in imm], "ms"),
        f"TLS {tls_med:.1f} ms; {imm_med / tls_med:.2f}x", "<= 2.5x TLS", imm_med <= 2.5 * tls_med)
    nd = load(f"{d}/nodelay.json")
    nd_med = stats([r["wall"] for r in nd])[0]
    row("--once immediate, broker with set_tcp_nodelay true", fmt([r["wall"] for r in nd], "ms"),
        f"{nd_med / tls_med:.2f}x TLS", "<= 2.5x TLS", nd_med <= 2.5 * tls_med)
    row("--once 202>poll>200: above retry-after 1 s", fmt([r["wall"] for r in poll], "ms", shift=retry_ms),
        f"{poll_above / tls_med:.2f}x TLS", "<= 2.5x TLS", poll_above <= 2.5 * tls_med)
    row("--once immediate: peak RSS", fmt(rss_mib(imm), "MiB", 2),
        f"TLS {stats(rss_mib(tls))[0]:.2f} MiB; {imm_rss / stats(rss_mib(tls))[0]:.2f}x", "<= 6.8 MiB",
        imm_rss <= 6.8)
    row("--once immediate: user+sys CPU", fmt(cpu(imm), "ms"),
        f"TLS {stats(cpu(tls))[0]:.1f} ms; {imm_cpu / max(stats(cpu(tls))[0], 0.01):.2f}x", "<= 15 ms",
        imm_cpu <= 15)
    row("--once poll flow: peak RSS", fmt(rss_mib(poll), "MiB", 2), "", "<= 6.8 MiB",
        stats(rss_mib(poll))[0] <= 6.8)
    row("--once poll flow: user+sys CPU", fmt(cpu(poll), "ms"), "", "<= 15 ms", stats(cpu(poll))[0] <= 15)
    row("floor: openssl s_client handshake", fmt([r["wall"] for r in tls], "ms"),
        f"RSS {stats(rss_mib(tls))[0]:.2f} MiB, CPU {stats(cpu(tls))[0]:.1f} ms", "", None)
    row("floor: true (process start)", fmt([r["wall"] for r in true_], "ms"),
        f"RSS {stats(rss_mib(true_))[0]:.2f} MiB; dpsd/true {imm_med / true_med:.0f}x", "", None)

    idle = {}
    for name in ("idle", "watchdog"):
        st = proc_status(f"{d}/{name}.status")
        total, calls = strace_summary(f"{d}/{name}.strace")
        idle[name] = (st, total, calls)
    seconds = int(open(f"{d}/idle_seconds").read())
    for name, label in (("idle", "no watchdog"), ("watchdog", "WATCHDOG_USEC=20s")):
        st, total, calls = idle[name]
        rss_anon_kib = int(st.get("RssAnon", "0 kB").split()[0])
        vm_rss_kib = int(st.get("VmRSS", "0 kB").split()[0])
        threads = int(st.get("Threads", "0"))
        wakeups = calls.get("epoll_wait", 0)
        top = ", ".join(f"{k} {v}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:4])
        row(f"idle daemon ({label}): RssAnon", f"{rss_anon_kib} KiB", f"VmRSS {vm_rss_kib} KiB",
            "<= 2 MB" if name == "idle" else "", (rss_anon_kib <= 2000) if name == "idle" else None)
        row(f"idle daemon ({label}): threads", str(threads), "", "1" if name == "idle" else "",
            (threads == 1) if name == "idle" else None)
        row(f"idle daemon ({label}): syscalls in {seconds} s", f"{total} ({top or 'none'})",
            f"epoll_wait returns {wakeups}", "0 wakeups/min" if name == "idle" else "",
            (wakeups == 0) if name == "idle" else None)

    print(f"dpsd benchmark: {runs} runs after 1 warm-up each, median (min-max); loopback emulator")
    widths = [max(len(str(r[i])) for r in rows + [("metric", "dpsd", "floor / ratio", "target", "met")])
              for i in range(5)]
    header = ("metric", "dpsd", "floor / ratio", "target", "met")
    for r in [header] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    for client, label in (("bench-imm", "immediate"), ("bench-poll", "202 > poll > 200")):
        lines, publishes, unsub = packet_sequence(f"{d}/log.jsonl", client)
        print(f"MQTT sequence, {label} (emulator log, last run; SUBACK/PUBACK/CONNACK are not logged):")
        print("\n".join(lines))
        print(f"  round trips: TCP 1 + TLS 1 (TLS 1.3) + CONNECT/CONNACK 1 + SUBSCRIBE/SUBACK 1 +"
              f" {publishes} request/reply = {4 + publishes}; the register waits for the SUBACK;"
              f" UNSUBSCRIBE {'sent' if unsub else 'not sent'}")


if __name__ == "__main__":
    if sys.argv[1] == "measure":
        cmd_measure(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
    elif sys.argv[1] == "report":
        cmd_report(sys.argv[2])
    else:
        sys.exit("usage: measure.py measure OUT RUNS WARMUP CMD... | report DIR")
