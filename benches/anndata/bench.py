#!/usr/bin/env python3
"""AnnData serving benchmarks: cellucid-rs against the 0.9.4 AnnData server.

Measures, on loopback only:
  * gene column latency (GET /var/<g>.values.f32), first request and repeated,
    for a CSC and a CSR .h5ad (for CSR: after cellucid-rs's one-time index;
    the index build time is reported separately);
  * launch -> first 200 on /_cellucid/health;
  * resident memory while serving (RssAnon sampled every 20 ms, and VmHWM).

Gene timings go over one reused keep-alive connection (http.client), the
same for both servers, and report median, p95 and max: a new connection per
request cost the Python client ~0.7 ms and hid the servers' own latency.

Every run is bounded: servers are killed at the end of each measurement.

    /tmp/venv/bin/python benches/anndata/bench.py gene --file /tmp/cellucid-bench/200k_csc.h5ad \
        --rust target/release/cellucid --py094 /tmp/wheels/c094
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import urllib.request

PY = sys.executable


class KeepAliveClient:
    """Times GETs over one reused HTTP/1.1 connection (loopback only).

    A fresh connection per request costs the Python client ~0.7 ms, which
    hid the servers' own latency. The connection is reopened only when the
    server closes it (then `reconnects` counts it, so the report says whether
    keep-alive was honoured). No Accept-Encoding: neither server compresses.
    """

    def __init__(self, port, timeout=900, accept_encoding=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.requests = 0
        self.reconnects = 0
        self.headers = {"Accept-Encoding": accept_encoding} if accept_encoding else {}
        self.encodings = {}
        self.wire_bytes = []
        self.decode_s = []

    def get(self, path):
        """Time to the last byte of the body as sent (not decoded)."""
        if self.conn.sock is None and self.requests:
            self.reconnects += 1
        t = time.perf_counter()
        self.conn.request("GET", "/" + path, headers=self.headers)
        r = self.conn.getresponse()
        body = r.read()
        elapsed = time.perf_counter() - t
        self.requests += 1
        if r.status != 200:
            raise RuntimeError(f"GET /{path}: {r.status} {body[:200]!r}")
        coding = r.getheader("Content-Encoding") or "identity"
        self.encodings[coding] = self.encodings.get(coding, 0) + 1
        self.wire_bytes.append(len(body))
        if coding != "identity":
            # What the browser would do next, timed apart from the server.
            t = time.perf_counter()
            body = decode(coding, body)
            self.decode_s.append(time.perf_counter() - t)
        return elapsed, body

    def close(self):
        self.conn.close()


def timed_digest(client, g):
    elapsed, body = client.get(f"var/{g}.values.f32")
    return elapsed, hashlib.sha256(body).digest()


def decode(coding, body):
    if coding == "gzip":
        import zlib

        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if coding == "zstd":
        import zstandard  # pip install zstandard (venv outside the repo)

        return zstandard.ZstdDecompressor().decompress(body, max_output_size=1 << 30)
    raise RuntimeError(f"unexpected Content-Encoding {coding}")


def summary_ms(samples):
    """Median, p95 (nearest rank) and max of timings in seconds, as ms."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, max(0, -(-95 * len(ordered) // 100) - 1))]
    return {"median": round(statistics.median(ordered) * 1000, 3),
            "p95": round(p95 * 1000, 3), "max": round(ordered[-1] * 1000, 3)}


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(kind, file, port, args, cache_dir=None):
    if kind == "rust":
        cmd = [args.rust, "serve", file, "--port", str(port), "--no-browser", "--no-web-ui",
               "--dataset-id", "bench", "--dataset-name", "bench", "--latent-key", "X_pca"]
        if cache_dir:
            cmd += ["--cache-dir", cache_dir]
        env = dict(os.environ)
    else:
        cmd = [PY, "-c", "import sys; from cellucid.cli import main; sys.exit(main())", "serve", file,
               "--port", str(port), "--no-browser", "--no-web-ui", "--dataset-id", "bench",
               "--dataset-name", "bench", "--latent-key", "X_pca"]
        env = dict(os.environ, PYTHONPATH=args.py094)
    log = tempfile.NamedTemporaryFile("w+", delete=False, suffix=".log")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc, t0, log.name


def wait_health(port, proc, t0, timeout=600, log=None):
    url = f"http://127.0.0.1:{port}/_cellucid/health"
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            text = open(log).read()[-3000:] if log else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {text}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except Exception:
            time.sleep(0.002)
    raise RuntimeError("no health 200 in time")


def fetch(port, path, timeout=900, accept_encoding=None):
    """GET over a new connection; the body as sent (still encoded, if it was)."""
    headers = {"Accept-Encoding": accept_encoding} if accept_encoding else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/{path}", headers=headers)
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = r.read()
    return time.perf_counter() - t, body


def wait_log(logfile, needle, proc, timeout=1800):
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        with open(logfile) as f:
            text = f.read()
        if needle in text:
            return text
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {text[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"{needle!r} not logged in time")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_sampler(pid, stop_event, out):
    peak_anon = 0
    trace = out.setdefault("trace", [])
    while not stop_event.is_set():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("RssAnon:"):
                        kb = int(line.split()[1])
                        peak_anon = max(peak_anon, kb)
                        trace.append((time.perf_counter(), kb))
                    elif line.startswith("VmHWM:"):
                        out["VmHWM_kB"] = int(line.split()[1])
        except FileNotFoundError:
            break
        time.sleep(0.02)
    out["peak_RssAnon_kB"] = peak_anon


def warm_page_cache(path):
    """Reads the file once so neither server pays for cold disk reads."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
{user}
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    default_type application/octet-stream;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{ listen 127.0.0.1:{port}; root {root}/files; location / {{ }} }}
}}
"""


def start_static(args, port, files):
    """nginx serving `files` ({relative path: bytes}) from the page cache:
    the floor any server of the same bytes meets with this client."""
    root = tempfile.mkdtemp(prefix="cellucid-bench-nginx-")
    for rel, body in files.items():
        path = os.path.join(root, "files", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(body)
    user = "user root root;" if os.geteuid() == 0 else ""
    with open(os.path.join(root, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(root=root, port=port, user=user))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    log = os.path.join(root, "nginx.out")
    t0 = time.perf_counter()
    proc = subprocess.Popen([nginx, "-p", root, "-e", os.path.join(root, "error.log"), "-c",
                             os.path.join(root, "nginx.conf")],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    return proc, t0, log, root


def cmd_gene(args):
    results = {}
    rng = random.Random(7)
    static_files = {}
    for kind in args.servers:
        warm_page_cache(args.file)
        port = free_port()
        cache = tempfile.mkdtemp(prefix="cellucid-bench-cache-")
        if kind == "nginx":
            # The bytes a server answered, as static files (list `rust`
            # before `nginx` in --servers).
            if not static_files:
                raise RuntimeError("--servers nginx needs a server listed before it")
            proc, t0, log, root = start_static(args, port, static_files)
            genes = sorted(int(k.split("/")[1].split(".")[0]) for k in static_files if k.startswith("var/"))
            try:
                deadline = time.perf_counter() + 30
                while True:
                    try:
                        fetch(port, "health.json")
                        break
                    except Exception:
                        if time.perf_counter() > deadline or proc.poll() is not None:
                            raise RuntimeError(open(log).read())
                        time.sleep(0.01)
                client = KeepAliveClient(port)
                try:
                    client.get("health.json")
                    first = [timed_digest(client, g)[0] for g in genes]
                    repeat = [timed_digest(client, g)[0] for g in genes]
                finally:
                    client.close()
                results[kind] = {"genes": len(genes), "first_ms": summary_ms(first),
                                 "repeat_ms": summary_ms(repeat), "reconnects": client.reconnects,
                                 "requests": client.requests,
                                 "note": "static copies of the answers, from the page cache"}
            finally:
                stop(proc)
                shutil.rmtree(root, ignore_errors=True)
                shutil.rmtree(cache, ignore_errors=True)
            print(kind, json.dumps(results[kind]), flush=True)
            continue
        proc, t0, log = start(kind, args.file, port, args, cache)
        try:
            wait_health(port, proc, t0, log=log)
            fetch(port, "dataset_identity.json")  # manifests ready
            manifest = json.loads(fetch(port, "var_manifest.json")[1])
            n_genes = len(manifest["fields"])
            genes = rng.sample(range(n_genes), args.genes if kind == "rust" else args.genes_py)
            index_ms = None
            save_ms = None
            if kind == "rust" and args.csr:
                # Genes are timed once the index is saved (persisted): while
                # its file is written out, the disk competes with serving.
                text = wait_log(log, "CSR gene index saved", proc)
                for line in text.splitlines():
                    if "elapsed_ms=" not in line:
                        continue
                    ms = int(line.split("elapsed_ms=")[1].split()[0])
                    if "CSR gene index ready" in line:
                        index_ms = ms
                    elif "CSR gene index saved" in line:
                        save_ms = ms
            client = KeepAliveClient(port, accept_encoding=args.accept_encoding)
            try:
                client.get("_cellucid/health")  # opens the connection untimed
                # Only digests are kept while timing: holding every 800 KB
                # body makes the client fault in fresh pages for each read,
                # which doubled the figures of some servers and not others.
                first = [timed_digest(client, g) for g in genes]
                repeat = [timed_digest(client, g) for g in genes]
                if not static_files:
                    static_files.update({f"var/{g}.values.f32": client.get(f"var/{g}.values.f32")[1]
                                         for g in genes})
                    static_files["health.json"] = b"{}"
            finally:
                client.close()
            for g, (_, a), (_, b) in zip(genes, first, repeat):
                if a != b:
                    raise RuntimeError(f"gene {g}: the repeat differs from the first answer")
            results[kind] = {
                "genes": len(genes),
                "first_ms": summary_ms([t for t, _ in first]),
                "repeat_ms": summary_ms([t for t, _ in repeat]),
                "reconnects": client.reconnects,
                "requests": client.requests,
                "index_build_ms": index_ms,
                "index_save_ms": save_ms,
                "accept_encoding": args.accept_encoding,
                "content_encodings": client.encodings,
                "median_wire_bytes": int(statistics.median(client.wire_bytes)),
                "client_decode_ms": summary_ms(client.decode_s) if client.decode_s else None,
            }
        finally:
            stop(proc)
            shutil.rmtree(cache, ignore_errors=True)
        print(kind, json.dumps(results[kind]), flush=True)
    return results


def cmd_launch(args):
    for kind in args.servers:
        times = []
        for _ in range(args.repeat):
            port = free_port()
            cache = tempfile.mkdtemp(prefix="cellucid-bench-cache-")
            proc, t0, log = start(kind, args.file, port, args, cache)
            try:
                times.append(wait_health(port, proc, t0, log=log))
            finally:
                stop(proc)
                shutil.rmtree(cache, ignore_errors=True)
        print(kind, json.dumps({"launch_to_health_s": [round(t, 4) for t in times],
                                "median_s": round(statistics.median(times), 4)}), flush=True)


def cmd_rss(args):
    for kind in args.servers:
        port = free_port()
        cache = tempfile.mkdtemp(prefix="cellucid-bench-cache-")
        proc, t0, log = start(kind, args.file, port, args, cache)
        stats = {}
        stop_event = threading.Event()
        sampler = threading.Thread(target=rss_sampler, args=(proc.pid, stop_event, stats))
        sampler.start()
        phases = [("start", time.perf_counter())]
        try:
            wait_health(port, proc, t0, log=log)
            ident = json.loads(fetch(port, "dataset_identity.json")[1])
            obs = json.loads(fetch(port, "obs_manifest.json")[1])
            phases.append(("manifests ready", time.perf_counter()))
            if kind == "rust" and args.csr:
                wait_log(log, "CSR gene index ready", proc)
                phases.append(("CSR index ready", time.perf_counter()))
            ae = args.accept_encoding
            for item in ident["embeddings"]["items"].values():
                fetch(port, item["file"], accept_encoding=ae)
            for f in obs["_continuousFields"]:
                fetch(port, f"obs/{f[0]}.values.f32", accept_encoding=ae)
            for f in obs["_categoricalFields"]:
                ext = {"uint8": "u8", "uint16": "u16", "uint32": "u32"}[f[3]]
                fetch(port, f"obs/{f[0]}.codes.{ext}", accept_encoding=ae)
                if obs["_obsSchemas"]["categorical"]["outlierPathPattern"]:
                    fetch(port, f"obs/{f[0]}.outliers.f32", accept_encoding=ae)
            phases.append(("obs + embeddings served", time.perf_counter()))
            rng = random.Random(11)
            for g in rng.sample(range(ident["stats"]["n_genes"]), args.genes):
                fetch(port, f"var/{g}.values.f32", accept_encoding=ae)
            phases.append((f"{args.genes} genes served", time.perf_counter()))
        finally:
            stop_event.set()
            sampler.join()
            stop(proc)
            shutil.rmtree(cache, ignore_errors=True)
        trace = stats.pop("trace", [])
        by_phase = {}
        for (name, begin), (_, end) in zip(phases, phases[1:]):
            by_phase[name + " -> next"] = max((kb for t, kb in trace if begin <= t <= end), default=0)
        print(kind, json.dumps({**stats, "peak_RssAnon_kB_by_phase": by_phase}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["gene", "launch", "rss"])
    p.add_argument("--file", required=True)
    p.add_argument("--rust", default="target/release/cellucid")
    p.add_argument("--py094", default="/tmp/wheels/c094", help="unzipped cellucid 0.9.4 wheel")
    p.add_argument("--servers", nargs="+", default=["rust", "py094"])
    p.add_argument("--csr", action="store_true", help="X is CSR: wait for the rust gene index")
    p.add_argument("--genes", type=int, default=20)
    p.add_argument("--accept-encoding", default=None,
                   help='e.g. "gzip, deflate, br, zstd" (what Chromium sends); default: none, '
                        "so neither server compresses. Timings stop at the last byte sent; "
                        "client_decode_ms reports the decoding a browser would do next")
    p.add_argument("--genes-py", type=int, default=5)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    {"gene": cmd_gene, "launch": cmd_launch, "rss": cmd_rss}[a.what](a)


if __name__ == "__main__":
    main()
