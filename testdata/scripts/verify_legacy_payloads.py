# Decode the legacy export payloads and check them against the source AnnData (documents the exact codecs).
# From the testdata folder, with anndata and scanpy installed:  python scripts/verify_legacy_payloads.py [exports-0.9.4|exports-0.9.1]
# A relative argument is taken relative to the testdata folder.
import gzip, json, sys, numpy as np, anndata as ad, warnings
from pathlib import Path
FIXTURES = Path(__file__).resolve().parent.parent   # the testdata/ folder (this script lives in testdata/scripts/)
def scanpy_pbmc68k():
    """scanpy's bundled 10x_pbmc68k_reduced.h5ad, wherever scanpy is installed."""
    import scanpy.datasets
    return Path(scanpy.datasets.__file__).resolve().parent / "10x_pbmc68k_reduced.h5ad"
warnings.filterwarnings("ignore")
root = str(FIXTURES / (sys.argv[1] if len(sys.argv) > 1 else "exports-0.9.4"))
a = ad.read_h5ad(scanpy_pbmc68k())
def raw(path):
    b = open(path, "rb").read()
    if path.endswith(".gz"):
        hdr = b[:10]
        assert hdr[:3] == b"\x1f\x8b\x08" and hdr[3] == 0 and hdr[4:8] == b"\0\0\0\0", hdr  # no FNAME, mtime 0
        print("   gzip header", hdr.hex(), "(XFL=%d OS=%d)" % (hdr[8], hdr[9]))
        b = gzip.decompress(b)
    return b
def check(ds):
    d = f"{root}/{ds}"
    ident = json.load(open(f"{d}/dataset_identity.json"))
    print("==", ds, "identity v", ident["version"])
    # embeddings
    if ident["version"] >= 3:
        item = ident["embeddings"]["items"]["X_umap"]; path = item["file"]
    else:
        path = ident["embeddings"]["files"]["2d"]
    pts = np.frombuffer(raw(f"{d}/{path}"), dtype="<f4").reshape(-1, 2)
    u = np.asarray(a.obsm["X_umap"], dtype=np.float64)
    lo, hi = u.min(0), u.max(0); center = (lo + hi) / 2; scale = 2.0 / (hi - lo).max()
    expect = ((u - center) * scale).astype(np.float32)
    print("  embedding", path, pts.shape, "exact match:", np.array_equal(pts, expect), "range", pts.min(0), pts.max(0))
    obs = json.load(open(f"{d}/obs_manifest.json"))
    cs = obs["_obsSchemas"].get("continuous"); ks = obs["_obsSchemas"].get("categorical")
    for f in obs["_continuousFields"]:
        idx, key = f[0], f[1]
        p = cs["pathPattern"].replace("{index}", str(idx))
        src = a.obs[key].to_numpy().astype(np.float32)
        if cs["quantized"]:
            bits = cs["quantizationBits"]; dt = "<u1" if bits == 8 else "<u2"; mq = 254 if bits == 8 else 65534
            q = np.frombuffer(raw(f"{d}/{p}"), dtype=dt)
            mn, mx = f[2], f[3]
            expect_q = np.clip((src.astype(np.float64) - mn) * (mq / (mx - mn)) + 1e-8, 0, mq).astype(dt)
            deq = mn + q.astype(np.float64) * ((mx - mn) / mq)
            print(f"  obs[{key}] {p} q{bits} codes==floor((v-min)*{mq}/(max-min)+1e-8): {np.array_equal(q, expect_q)}; max |err|={np.abs(deq - src).max():.4g} (step {(mx-mn)/mq:.4g})")
        else:
            v = np.frombuffer(raw(f"{d}/{p}"), dtype="<f4")
            print(f"  obs[{key}] {p} f32 exact: {np.array_equal(v, src)}")
    for f in obs["_categoricalFields"]:
        idx, key, cats, dtype, missing = f[:5]
        ext = {"uint8": "u8", "uint16": "u16", "uint32": "u32"}[dtype]
        p = ks["codesPathPattern"].replace("{index}", str(idx)).replace("{ext}", ext)
        codes = np.frombuffer(raw(f"{d}/{p}"), dtype={"uint8": "<u1", "uint16": "<u2", "uint32": "<u4"}[dtype])
        src = a.obs[key].cat.codes.to_numpy()
        ok = np.array_equal(np.where(src < 0, missing, src), codes)
        po = ks["outlierPathPattern"].replace("{index}", str(idx))
        ob = raw(f"{d}/{po}")
        if ks["outlierQuantized"]:
            oq = np.frombuffer(ob, dtype="<u1" if ks["outlierDtype"] == "uint8" else "<u2")
            print(f"  obs[{key}] {p} codes ok={ok} cats={len(cats)}; outliers {po} quantized [{f[6]}, {f[7]}], missing-marker count={int((oq == (255 if ks['outlierDtype']=='uint8' else 65535)).sum())}")
        else:
            of = np.frombuffer(ob, dtype="<f4")
            print(f"  obs[{key}] {p} codes ok={ok}; outliers {po} f32 NaN count={int(np.isnan(of).sum())} range=({np.nanmin(of):.4g},{np.nanmax(of):.4g})")
    var = json.load(open(f"{d}/var_manifest.json"))
    vs = var["_varSchema"]
    for f in var["fields"][:3]:
        idx, name = f[0], f[1]
        p = vs["pathPattern"].replace("{index}", str(idx))
        src = np.asarray(a[:, name].X).ravel().astype(np.float32)
        if vs["quantized"]:
            bits = vs["quantizationBits"]; q = np.frombuffer(raw(f"{d}/{p}"), dtype="<u1" if bits == 8 else "<u2")
            mq = 254 if bits == 8 else 65534
            deq = f[2] + q * ((f[3] - f[2]) / mq)
            print(f"  var[{name}] {p} q{bits} min/max ok={np.isclose(f[2], src.min()) and np.isclose(f[3], src.max())} max|err|={np.abs(deq-src).max():.4g}")
        else:
            v = np.frombuffer(raw(f"{d}/{p}"), dtype="<f4"); print(f"  var[{name}] {p} f32 exact: {np.array_equal(v, src)}")
    c = json.load(open(f"{d}/connectivity_manifest.json"))
    it = "<u2" if c["index_dtype"] == "uint16" else "<u4"
    s = np.frombuffer(raw(f"{d}/{c['sourcesPath']}"), dtype=it); t = np.frombuffer(raw(f"{d}/{c['destinationsPath']}"), dtype=it)
    w = np.frombuffer(raw(f"{d}/{c['weightsPath']}"), dtype="<f8")
    m = a.obsp["connectivities"].tocoo(); up = m.row < m.col
    order = np.lexsort((m.col[up], m.row[up]))
    print("  edges", len(s), "src<dst:", bool((s < t).all()), "sorted:", bool(np.all(np.diff(s.astype(np.int64) * 100000 + t) > 0)),
          "== upper triangle of obsp['connectivities'] (row-major):", np.array_equal(s, m.row[up][order]) and np.array_equal(t, m.col[up][order]) and np.array_equal(w, m.data[up][order]))
for ds in ["pbmc68k-q8-gz", "pbmc68k-f32", "pbmc68k-q16-gz"]:
    if Path(root, ds).is_dir():   # testdata/exports-0.9.1 keeps only pbmc68k-q8-gz of these
        check(ds)
