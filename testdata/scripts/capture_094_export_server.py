# Capture the HTTP behaviour of cellucid 0.9.4's prepared-export server (`cellucid serve <exports dir>`).
# From the testdata folder:
#   PYTHONPATH=<unzipped cellucid-0.9.4 wheel> python scripts/capture_094_export_server.py
import json, os, urllib.request, warnings
from pathlib import Path
FIXTURES = Path(__file__).resolve().parent.parent   # the testdata/ folder (this script lives in testdata/scripts/)
warnings.filterwarnings("ignore")
from cellucid.server import CellucidServer
from cellucid import __version__
assert __version__ == "0.9.4"
out = str(FIXTURES / "captures" / "export-server-0.9.4"); os.makedirs(out, exist_ok=True)
srv = CellucidServer(str(FIXTURES / "exports-0.9.4"), port=int(os.environ.get("CAPTURE_PORT", "28766")),
                     quiet=True, serve_web_ui=False)
srv.start_background()
base = f"http://127.0.0.1:{srv.port}"
log = []
def get(path, headers=None, method="GET"):
    req = urllib.request.Request(base + path, headers=headers or {}, method=method)
    try:
        r = urllib.request.urlopen(req); status, hdrs, body = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, body = e.code, dict(e.headers), e.read()
    log.append({"method": method, "path": path, "request_headers": headers or {}, "status": status,
                "response_headers": {k: v for k, v in hdrs.items() if k not in ("Date", "Server")},
                "body_len": len(body), "body_head": body[:200].decode("latin1") if path.endswith(("json", "datasets", "health", "info")) else None})
    return body
for p in ["/_cellucid/health", "/_cellucid/info", "/_cellucid/datasets", "/datasets.json",
          "/pbmc68k-q8-gz/dataset_identity.json", "/pbmc68k-q8-gz/embeddings/0_2d.bin.gz"]:
    get(p)
get("/pbmc68k-q8-gz/embeddings/0_2d.bin.gz", {"Range": "bytes=0-31"})
get("/pbmc68k-q8-gz/embeddings/0_2d.bin.gz", {"Range": "bytes=-10"})
get("/pbmc68k-q8-gz/embeddings/0_2d.bin.gz", {"Range": "bytes=999999-"})
get("/pbmc68k-q8-gz/embeddings/0_2d.bin.gz", method="HEAD")
get("/pbmc68k-q8-gz/embeddings/0_2d.bin.gz", {"Accept-Encoding": "gzip"})
get("/pbmc68k-q8-gz/points_2d.bin.gz")
get("/pbmc68k-q8-gz/obs/0.codes.u8.gz", {"Origin": "https://www.cellucid.com"})
get("/pbmc68k-q8-gz/obs/0.codes.u8.gz", {"Origin": "https://evil.example"})
get("/pbmc68k-q8-gz/../pbmc68k-f32/obs_manifest.json")
json.dump(log, open(f"{out}/_http_log.json", "w"), indent=1)
srv.stop()
print("ok", len(log))
