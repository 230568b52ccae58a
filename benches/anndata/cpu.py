#!/usr/bin/env python3
"""Server CPU time per request (utime+stime of the server from /proc), which a
busy machine disturbs less than latency. Loopback only; the server is
stopped at the end.

    python benches/anndata/cpu.py BIN FILE.h5ad N gene   # N distinct genes, then again
    python benches/anndata/cpu.py BIN FILE.h5ad N raw    # N 1 MiB Range reads of the byte route
    python benches/anndata/cpu.py BIN FILE.h5ad 40 gene 50   # repeat pass 50 times (kept files)

Prints one JSON line: CPU µs and wall ms per request, first pass and repeat.
"""
import http.client, json, os, socket, subprocess, sys, time, tempfile
binary, path, n, kind = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
repeats = int(sys.argv[5]) if len(sys.argv) > 5 else 1
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
cache = tempfile.mkdtemp()
p = subprocess.Popen([binary, "serve", "--no-browser", "--no-web-ui", "--quiet", "--port", str(port),
                      "--cache-dir", cache, path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("GET", "/_cellucid/health"); c.getresponse().read(); break
        except OSError:
            time.sleep(0.05)
    def get(u):
        c.request("GET", u); r = c.getresponse(); b = r.read(); assert r.status in (200, 206), (u, r.status); return b
    if kind == "gene":
        get("/obs_manifest.json"); get("/var_manifest.json")
        paths = [f"/var/{g}.values.f32" for g in range(n)]
    else:  # raw: 1 MiB range reads of the .h5ad through the byte route
        name = json.loads(get("/_cellucid/datasets"))["datasets"][0]["anndata"]["file"]["url"]
        size = os.path.getsize(path)
        paths = [("/" + name, f"bytes={(i * 7919 * 4096) % (size - 2**20)}-{(i * 7919 * 4096) % (size - 2**20) + 2**20 - 1}") for i in range(n)]
    def ticks():
        f = open(f"/proc/{p.pid}/stat").read().rsplit(") ", 1)[1].split()
        return int(f[11]) + int(f[12])
    def run(ps):
        t0, w0 = ticks(), time.perf_counter()
        for x in ps:
            if kind == "gene":
                get(x)
            else:
                c.request("GET", x[0], headers={"Range": x[1]}); r = c.getresponse(); r.read(); assert r.status == 206
        return (ticks() - t0) * 1e6 / os.sysconf("SC_CLK_TCK") / len(ps), (time.perf_counter() - w0) * 1e3 / len(ps)
    first = run(paths)
    repeat = run(paths * repeats)
    print(json.dumps({"kind": kind, "n": n, "first_cpu_us": round(first[0], 1), "first_wall_ms": round(first[1], 3),
                      "repeat_cpu_us": round(repeat[0], 1), "repeat_wall_ms": round(repeat[1], 3)}))
finally:
    p.terminate(); p.wait()
