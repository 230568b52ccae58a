# Capture the HTTP surface of cellucid 0.9.4's AnnData server (the legacy "files on the fly" mode).
# From the testdata folder:
#   PYTHONPATH=<unzipped cellucid-0.9.4 wheel> python scripts/capture_094_anndata_server.py [SRC [OUT]]
import json, os, sys, gzip, urllib.request, warnings
from pathlib import Path
FIXTURES = Path(__file__).resolve().parent.parent   # the testdata/ folder (this script lives in testdata/scripts/)
warnings.filterwarnings("ignore")
from cellucid import AnnDataServer, __version__
assert __version__ == "0.9.4"
src = sys.argv[1] if len(sys.argv) > 1 else str(FIXTURES / "anndata" / "pbmc68k_reduced.h5ad")
out = sys.argv[2] if len(sys.argv) > 2 else str(FIXTURES / "captures" / "anndata-server-0.9.4" / "h5ad")
os.makedirs(out, exist_ok=True)
srv = AnnDataServer(src, port=int(os.environ.get("CAPTURE_PORT", "28765")), host="127.0.0.1", quiet=True,
                    dataset_name="PBMC 68k reduced (scanpy)", dataset_id="pbmc68k-reduced",
                    latent_key="X_pca", knn_key="connectivities", serve_web_ui=False)
srv.start_background()
base = srv.url
log = []
def get(path, headers=None, method="GET"):
    req = urllib.request.Request(base + "/" + path, headers=headers or {}, method=method)
    try:
        r = urllib.request.urlopen(req)
        status, hdrs, body = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, body = e.code, dict(e.headers), e.read()
    log.append({"method": method, "path": path, "request_headers": headers or {}, "status": status,
                "response_headers": hdrs, "body_len": len(body)})
    return status, hdrs, body
def save(path, body):
    p = os.path.join(out, path)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, "wb").write(body)
for p in ["_cellucid/health", "_cellucid/info", "_cellucid/datasets", "dataset_identity.json",
          "obs_manifest.json", "var_manifest.json", "connectivity_manifest.json",
          "_cellucid/mapping/candidates.json"]:
    s, h, b = get(p); save(p if p.endswith(".json") else p + ".json", b)
ident = json.loads(open(os.path.join(out, "dataset_identity.json")).read())
obs = json.loads(open(os.path.join(out, "obs_manifest.json")).read())
var = json.loads(open(os.path.join(out, "var_manifest.json")).read())
conn = json.loads(open(os.path.join(out, "connectivity_manifest.json")).read())
paths = [it["file"] for it in ident["embeddings"]["items"].values()]
cs = obs["_obsSchemas"].get("continuous"); ks = obs["_obsSchemas"].get("categorical")
for f in obs["_continuousFields"]: paths.append(cs["pathPattern"].replace("{index}", str(f[0])))
ext = {"uint8": "u8", "uint16": "u16", "uint32": "u32"}
for f in obs["_categoricalFields"]:
    paths.append(ks["codesPathPattern"].replace("{index}", str(f[0])).replace("{ext}", ext[f[3]]))
    if ks["outlierPathPattern"]: paths.append(ks["outlierPathPattern"].replace("{index}", str(f[0])))
for f in var["fields"][:5]: paths.append(var["_varSchema"]["pathPattern"].replace("{index}", str(f[0])))
paths += [conn["sourcesPath"], conn["destinationsPath"], conn["weightsPath"]]
for p in paths:
    s, h, b = get(p)                                   # identity encoding
    save(p, b)
    s2, h2, b2 = get(p, {"Accept-Encoding": "gzip"})   # transparent gzip
    assert gzip.decompress(b2) == b, p
    get(p, method="HEAD")
    get(p, {"Range": "bytes=0-15"})                    # is Range honoured?
get("var/999999.values.f32"); get("obs/0.codes.u16"); get("points_2d.bin")
json.dump(log, open(os.path.join(out, "_http_log.json"), "w"), indent=1)
srv.stop()
print("captured", len(log), "requests into", out)
