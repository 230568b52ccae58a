# Write the tiny inputs of every non-AnnData kind cellucid 0.9.5 serves to the
# byte viewer (testdata/inputs-0.9.5/), then capture what the 0.9.5 server says
# about each (testdata/captures/inputs-server-0.9.5/<case>/).
#
# From the testdata folder, in a venv with cellucid==0.9.5, mudata, loompy,
# pyreadr, scipy and h5py installed:  python scripts/make_095_inputs.py
#
# Every matrix is synthetic (small integers from a fixed seed). gzip members
# are written with mtime 0 so re-running gives the same bytes for the
# MatrixMarket and R files; HDF5 writers (h5py, loompy, mudata) stamp times
# into their files, so those inputs change byte-wise on every run and their
# captures are regenerated with them.
import gzip, io, json, os, shutil, urllib.error, urllib.request, warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

warnings.filterwarnings("ignore")
TESTDATA = Path(__file__).resolve().parent.parent
INPUTS = TESTDATA / "inputs-0.9.5"
CAPTURES = TESTDATA / "captures" / "inputs-server-0.9.5"

rng = np.random.default_rng(7)
N_CELLS, N_GENES, N_PROT = 6, 4, 3
counts = rng.integers(0, 5, size=(N_CELLS, N_GENES)).astype(np.float32)
prot = rng.integers(0, 9, size=(N_CELLS, N_PROT)).astype(np.float32)
barcodes = [f"AAAC{i:04d}-1" for i in range(N_CELLS)]
genes = [f"Gene{j}" for j in range(N_GENES)]
gene_ids = [f"ENSG{j:011d}" for j in range(N_GENES)]
umap = rng.normal(size=(N_CELLS, 2)).astype(np.float32)


def gzip_bytes(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as f:
        f.write(data)
    return out.getvalue()


def write_mudata():
    import anndata as ad
    import mudata as md

    rna = ad.AnnData(counts.copy(), obs=pd.DataFrame(index=barcodes), var=pd.DataFrame(index=genes))
    rna.obsm["X_umap"] = umap
    rna.obs["cluster"] = pd.Categorical(["a", "b", "a", "b", "a", "b"])
    adt = ad.AnnData(prot.copy(), obs=pd.DataFrame(index=barcodes),
                     var=pd.DataFrame(index=[f"CD{k}" for k in range(N_PROT)]))
    mdata = md.MuData({"prot": adt, "rna": rna})
    mdata.update()
    named = mdata.copy()
    named.uns["cellucid"] = {"id": "tiny-mudata", "name": "Tiny MuData"}
    named.write(INPUTS / "tiny.h5mu")
    # The modality alone, to compare the folder files a MuData serves with.
    rna.write_h5ad(INPUTS / "tiny.rna.h5ad")
    mdata.write_zarr(INPUTS / "tiny.mudata.zarr")
    # The same store zipped (members relative to the store root, fixed
    # times, sorted), as `zip -r` inside the folder would.
    import zipfile

    root = INPUTS / "tiny.mudata.zarr"
    with zipfile.ZipFile(INPUTS / "tiny.mudata.zarr.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())


def write_loom():
    import loompy

    # Loom stores genes x cells; the embedding is a 2-column col_attr.
    loompy.create(
        str(INPUTS / "tiny.loom"),
        counts.T.copy(),
        row_attrs={"Gene": np.array(genes), "Accession": np.array(gene_ids)},
        col_attrs={"CellID": np.array(barcodes), "X_umap": umap.astype(np.float64)},
    )


def write_10x_h5(path: Path):
    # Cell Ranger >= 3 feature-barcode matrix: a CSC matrix of genes x cells.
    csc = sp.csc_matrix(counts.T.astype(np.int32))
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m.create_dataset("barcodes", data=np.array(barcodes, dtype="S"))
        m.create_dataset("data", data=csc.data.astype(np.int32))
        m.create_dataset("indices", data=csc.indices.astype(np.int64))
        m.create_dataset("indptr", data=csc.indptr.astype(np.int64))
        m.create_dataset("shape", data=np.array([N_GENES, N_CELLS], dtype=np.int32))
        feat = m.create_group("features")
        feat.create_dataset("id", data=np.array(gene_ids, dtype="S"))
        feat.create_dataset("name", data=np.array(genes, dtype="S"))
        feat.create_dataset("feature_type", data=np.array(["Gene Expression"] * N_GENES, dtype="S"))
        feat.create_dataset("genome", data=np.array(["GRCh38"] * N_GENES, dtype="S"))
        feat.create_dataset("_all_tag_keys", data=np.array([b"genome"]))
        f.attrs["filetype"] = "matrix"
        f.attrs["version"] = 2


def write_mtx(folder: Path, prefix: str, features_name: str):
    folder.mkdir()
    buf = io.BytesIO()
    scipy.io.mmwrite(buf, sp.coo_matrix(counts.T.astype(np.int64)), comment="tiny synthetic", field="integer")
    (folder / f"{prefix}matrix.mtx.gz").write_bytes(gzip_bytes(buf.getvalue()))
    (folder / f"{prefix}barcodes.tsv.gz").write_bytes(gzip_bytes("".join(b + "\n" for b in barcodes).encode()))
    rows = "".join(f"{i}\t{n}\tGene Expression\n" for i, n in zip(gene_ids, genes))
    (folder / f"{prefix}{features_name}").write_bytes(gzip_bytes(rows.encode()))


def write_r():
    import pyreadr

    frame = pd.DataFrame(counts, index=barcodes, columns=genes)
    # saveRDS's default: gzip-compressed serialisation, named .rds.
    pyreadr.write_rds(str(INPUTS / "tiny.rds"), frame, compress="gzip")
    pyreadr.write_rdata(str(INPUTS / "tiny.RData"), frame, df_name="counts")
    (INPUTS / "tiny.rdata.gz").write_bytes(gzip_bytes((INPUTS / "tiny.RData").read_bytes()))


def make_inputs():
    if INPUTS.exists():
        shutil.rmtree(INPUTS)
    INPUTS.mkdir(parents=True)
    write_mudata()
    write_loom()
    write_10x_h5(INPUTS / "tiny_10x.h5")
    outs = INPUTS / "outs"
    outs.mkdir()
    write_10x_h5(outs / "filtered_feature_bc_matrix.h5")
    (outs / "metrics_summary.csv").write_text("Estimated Number of Cells\n6\n")
    (outs / ".hidden").write_text("not listed\n")
    write_mtx(INPUTS / "mtx", "", "features.tsv.gz")
    write_mtx(INPUTS / "geo", "GSM123_", "genes.tsv.gz")
    write_r()


def capture(src: Path, name: str, **kw):
    from cellucid import AnnDataServer, __version__

    assert __version__ == "0.9.5"
    out = CAPTURES / name
    out.mkdir(parents=True, exist_ok=True)
    srv = AnnDataServer(str(src), port=0, quiet=True, serve_web_ui=False, **kw)
    srv.start_background()
    base, log = srv.url, []

    def get(path, headers=None, method="GET", save=None):
        req = urllib.request.Request(base + path, headers=headers or {}, method=method)
        try:
            r = urllib.request.urlopen(req)
            status, hdrs, body = r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, body = e.code, dict(e.headers), e.read()
        # ETags name inode and mtime, which differ in a clone: kept out.
        keep = {k: v for k, v in hdrs.items() if k not in ("Date", "Server", "ETag")}
        log.append({"method": method, "path": path, "request_headers": headers or {}, "status": status,
                    "response_headers": keep, "body_len": len(body)})
        if save:
            (out / save).write_bytes(body)
        return status, hdrs, body

    for p in ["health", "info", "datasets"]:
        get(f"/_cellucid/{p}", save=f"_cellucid_{p}.json")
    ds = json.loads((out / "_cellucid_datasets.json").read_text())
    file = ds["datasets"][0]["anndata"]["file"]
    url = "/" + file["url"]
    if file["layout"] != "folder":
        get(url, {"Range": "bytes=0-15"})
        get(url, {"Range": "bytes=-8"})
        get(url, method="HEAD")
        get(url, {"Range": f"bytes={file['size']}-"})
        get(url + "/x")
    elif "files" in file:
        for entry in file["files"]:
            get(url + entry["path"], {"Range": "bytes=0-7"})
        get(url + ".hidden")
        get(url + "nope")
        get(url)
    else:
        for key in ["zarr.json", ".zmetadata", ".zgroup", "nope/.zarray"]:
            get(url + key)
        get(url)
    (out / "_http_log.json").write_text(json.dumps(log, indent=1) + "\n")
    srv.stop()


def make_captures():
    if CAPTURES.exists():
        shutil.rmtree(CAPTURES)
    named = {"dataset_id": "tiny", "dataset_name": "Tiny"}
    capture(INPUTS / "tiny.h5mu", "h5mu")
    capture(INPUTS / "tiny.h5mu", "h5mu_modality", modality="prot", dataset_id="tiny-prot")
    capture(INPUTS / "tiny.mudata.zarr", "mudata_zarr", **named)
    capture(INPUTS / "tiny.mudata.zarr.zip", "mudata_zarr_zip", **named)
    capture(INPUTS / "tiny.loom", "loom", **named)
    capture(INPUTS / "tiny_10x.h5", "tenx_h5", **named)
    capture(INPUTS / "outs", "tenx_outs", **named)
    capture(INPUTS / "mtx", "mtx", **named)
    capture(INPUTS / "geo", "mtx_geo", **named)
    capture(INPUTS / "tiny.rds", "rds", **named)
    capture(INPUTS / "tiny.RData", "rdata", **named)
    capture(INPUTS / "tiny.rdata.gz", "rdata_gz", **named)


if __name__ == "__main__":
    make_inputs()
    make_captures()
    print("ok")
