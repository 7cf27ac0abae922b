#!/usr/bin/env python3
"""Load-insensitive cost of a commit next to a GET /v1/version, per server build.

For each binary given (A/B builds of bin/weaseldb), interleaved ROUNDS times:
start a fresh disk-backed server, then run loadgen --op version and --op
commit on the same shape (64 connections x PIPELINE by default) and read the
server's /proc deltas around each phase: CPU (utime+stime), read/write
syscalls (/proc/PID/io syscr/syscw), context switches summed over its
threads, and, when perf works, user+kernel instructions. Prints one line per
phase with the figures per answered request, plus the commit/version rate
ratio of that round. Holds flock /tmp/weaseldb-bench.lock per round.

Usage: bench/commitcost.py [--rounds N] [--seconds S] [--conns C]
       [--pipeline K] [--loadgen PATH] NAME=BINARY [NAME=BINARY ...]
"""
import argparse, fcntl, glob, json, os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

HZ = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def snap(pid):
    with open(f"/proc/{pid}/stat") as f:
        st = f.read().rsplit(")", 1)[1].split()
    cpu = (int(st[11]) + int(st[12])) / HZ  # utime, stime
    io = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            k, v = line.split(":")
            io[k] = int(v)
    vol = invol = 0
    for t in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(t) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except FileNotFoundError:
            pass
    return dict(cpu=cpu, syscr=io["syscr"], syscw=io["syscw"], vcs=vol, ivcs=invol)


def phase(args, pid, port, op):
    perf = None
    if shutil.which("perf") and not args.no_perf:
        perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "instructions", "-p", str(pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    before = snap(pid)
    out = subprocess.run([args.loadgen, "--addr", f"127.0.0.1:{port}", "--quiet", "--json",
                          "--warmup", "0s", "--duration", f"{args.seconds}s",
                          "--connections", str(args.conns), "--pipeline", str(args.pipeline),
                          "--point-reads", "1", "--writes", "1", "--dist", "uniform", "--op", op],
                         capture_output=True, text=True)
    after = snap(pid)
    instr = None
    if perf:
        perf.send_signal(signal.SIGINT)
        _, err = perf.communicate()
        for line in err.splitlines():
            f = line.split(",")
            if len(f) > 2 and f[2].startswith("instructions") and f[0].isdigit():
                instr = int(f[0])
    try:
        summary = json.loads(out.stdout)
        run = summary["run"]
    except Exception:
        sys.exit(f"loadgen failed: {out.stderr[-2000:]}")
    series = summary.get("server", {}).get("series", {})

    def mean(name):  # a histogram's mean over the phase, from its deltas
        c = series.get(name + "_count", {}).get("delta", 0)
        return series.get(name + "_sum", {}).get("delta", 0) / c if c else None
    n = run["latency"]["count"]
    d = {k: after[k] - before[k] for k in after}
    return dict(op=op, n=n, rate=run["ok_per_sec"], p50=run["latency"]["p50_ms"], p99=run["latency"]["p99_ms"],
                cpu_us=d["cpu"] * 1e6 / n, reads=d["syscr"] / n, writes=d["syscw"] / n,
                vcs=d["vcs"] / n, ivcs=d["ivcs"] / n, instr=(instr / n if instr else None),
                resolve=mean("weaseldb_resolve_batch_size"), persist=mean("weaseldb_persist_batch_transactions"))


def one_round(args, name, binary):
    data = tempfile.mkdtemp(prefix="weaseldb-commitcost-")
    port = free_port()
    srv = subprocess.Popen([binary, "--listen", f"127.0.0.1:{port}", "--data-dir", data, "--persist", "disk"] + args.server_args,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except Exception:
                time.sleep(0.05)
        res = [phase(args, srv.pid, port, op) for op in ("version", "commit")]
    finally:
        srv.terminate()
        srv.wait()
        shutil.rmtree(data, ignore_errors=True)
    ratio = res[1]["rate"] / res[0]["rate"]
    for r in res:
        ins = f"{r['instr']/1000:7.1f}k" if r["instr"] else "      -"
        print(f"{name:8} {r['op']:8} n={r['n']:8d} {r['rate']:9.0f}/s p50 {r['p50']:6.2f} p99 {r['p99']:7.2f} ms | "
              f"cpu {r['cpu_us']:6.1f} us  reads {r['reads']:5.2f} writes {r['writes']:5.2f} "
              f"vcs {r['vcs']:5.2f} ivcs {r['ivcs']:5.2f} instr {ins}"
              + (f" | batch resolve {r['resolve']:5.1f} persist {r['persist']:5.1f}" if r["resolve"] else ""), flush=True)
    print(f"{name:8} commit/version ratio {ratio:.3f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--loadgen", default="bin/loadgen")
    ap.add_argument("--no-perf", action="store_true")
    ap.add_argument("--server-arg", dest="server_args", action="append", default=[])
    ap.add_argument("builds", nargs="+")
    args = ap.parse_args()
    builds = [b.split("=", 1) for b in args.builds]
    with open("/proc/loadavg") as f:
        print(f"nproc {os.cpu_count()}, load average {' '.join(f.read().split()[:3])}, {time.strftime('%FT%TZ', time.gmtime())}")
    for i in range(args.rounds):
        for name, binary in builds:
            with open("/tmp/weaseldb-bench.lock", "w") as lk:
                fcntl.flock(lk, fcntl.LOCK_EX)
                one_round(args, name, binary)


if __name__ == "__main__":
    main()
