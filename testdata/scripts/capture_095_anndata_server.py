# Capture the HTTP surface of cellucid 0.9.5's AnnData server (byte-serving; the browser decodes the AnnData itself).
# From the testdata folder, with cellucid 0.9.5 installed:  python scripts/capture_095_anndata_server.py
import json, os, sys, urllib.request, warnings
from pathlib import Path
FIXTURES = Path(__file__).resolve().parent.parent   # the testdata/ folder (this script lives in testdata/scripts/)
warnings.filterwarnings("ignore")
from cellucid import AnnDataServer, __version__
assert __version__ == "0.9.5"
def capture(src, out, port, **kw):
    os.makedirs(out, exist_ok=True)
    srv = AnnDataServer(src, port=port, quiet=True, serve_web_ui=False, **kw)
    srv.start_background()
    base = srv.url; log = []
    def get(path, headers=None, method="GET", save=None):
        req = urllib.request.Request(base + path, headers=headers or {}, method=method)
        try:
            r = urllib.request.urlopen(req); status, hdrs, body = r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, body = e.code, dict(e.headers), e.read()
        log.append({"method": method, "path": path, "request_headers": headers or {}, "status": status,
                    "response_headers": {k: v for k, v in hdrs.items() if k not in ("Date", "Server")}, "body_len": len(body)})
        if save: open(os.path.join(out, save), "wb").write(body)
        return status, hdrs, body
    for p in ["health", "info", "datasets", "protocol"]:
        get(f"/_cellucid/{p}", save=f"_cellucid_{p}.json")
    ds = json.load(open(os.path.join(out, "_cellucid_datasets.json")))
    url = "/" + ds["datasets"][0]["anndata"]["file"]["url"]
    if url.endswith("/"):
        for key in [".zmetadata", "zarr.json", ".zgroup", "X/.zarray", "X/0.0", "nope/.zarray"]:
            get(url + key)
    else:
        s, h, b = get(url, {"Range": "bytes=0-524287"})
        get(url, {"Range": "bytes=0-15"}); get(url, method="HEAD")
        etag = h.get("ETag"); get(url, {"If-None-Match": etag}); get(url, {"Range": "bytes=0-15", "If-Range": '"other"'})
        get(url, {"Range": "bytes=99999999-"}); get(url + "x")
    json.dump(log, open(os.path.join(out, "_http_log.json"), "w"), indent=1)
    srv.stop()
root = str(FIXTURES / "captures" / "anndata-server-0.9.5")
capture(str(FIXTURES / "prepared-0.9.5" / "pbmc68k_reduced.cellucid.h5ad"), f"{root}/prepared_h5ad", 28767)
capture(str(FIXTURES / "prepared-0.9.5" / "pbmc68k_reduced.cellucid.zarr"), f"{root}/prepared_zarr_v2", 28768)
capture(str(FIXTURES / "anndata" / "pbmc68k_reduced.modern.h5ad"), f"{root}/plain_modern_h5ad", 28769,
        dataset_id="pbmc68k-reduced", dataset_name="PBMC 68k reduced (scanpy)", latent_key="X_pca", knn_key="connectivities", gene_id_column=None, obs_keys=["bulk_labels", "louvain", "n_counts"], embedding_keys={"2d": "X_umap", "3d": ("X_pca", [0, 1, 2])})
print("ok")
