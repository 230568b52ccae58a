#!/usr/bin/env python3
"""Seeded generator of large AnnData .h5ad files for the cellucid-rs benchmarks.

Writes obs (3 categorical + 2 continuous columns), var (gene names), obsm
(X_umap 2-D, X_pca 20-D) with anndata, then X with h5py in row (CSR) or
column (CSC) blocks so memory stays small whatever the size. Every row (CSR)
or column (CSC) holds the same number of stored values, one per stratum of
the other axis, so the files are exactly reproducible from the seed.

Needs numpy, pandas, h5py, anndata (a venv outside the repository):
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install anndata h5py
    /tmp/venv/bin/python benches/anndata/generate.py --cells 200000 --genes 2000 \
        --density 0.1 --layout csc --out /tmp/cellucid-bench/200k_csc.h5ad
"""
import argparse
import os

import anndata as ad
import h5py
import numpy as np
import pandas as pd


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, required=True)
    p.add_argument("--genes", type=int, required=True)
    p.add_argument("--density", type=float, default=0.1, help="fraction of stored values")
    p.add_argument("--layout", choices=["csr", "csc"], default="csr")
    p.add_argument("--seed", type=int, default=20261124)
    p.add_argument("--block", type=int, default=20000, help="rows (CSR) or columns (CSC) written at once")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    n, g = a.cells, a.genes
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)

    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(rng.integers(0, 10, n), [f"type_{i}" for i in range(10)]),
            "sample": pd.Categorical.from_codes(rng.integers(0, 30, n), [f"sample_{i}" for i in range(30)]),
            "cluster": pd.Categorical.from_codes(rng.integers(0, 100, n), [str(i) for i in range(100)]),
            "n_counts": rng.gamma(2.0, 1000.0, n).astype(np.float32),
            "pct_mito": rng.random(n).astype(np.float32),
        },
        index=[f"cell{i}" for i in range(n)],
    )
    var = pd.DataFrame(index=[f"GENE{j}" for j in range(g)])
    centres = rng.normal(size=(10, 2)) * 10
    umap = (centres[obs["cell_type"].cat.codes.to_numpy()] + rng.normal(size=(n, 2))).astype(np.float32)
    pca = rng.normal(size=(n, 20)).astype(np.float32)
    adata = ad.AnnData(obs=obs, var=var, obsm={"X_umap": umap, "X_pca": pca})
    adata.write_h5ad(a.out)

    major, minor = (n, g) if a.layout == "csr" else (g, n)
    k = max(1, int(round(a.density * minor)))
    stride = minor / k
    with h5py.File(a.out, "a") as f:
        grp = f.create_group("X")
        grp.attrs["encoding-type"] = f"{a.layout}_matrix"
        grp.attrs["encoding-version"] = "0.1.0"
        grp.attrs["shape"] = np.array([n, g], dtype=np.int64)
        nnz = major * k
        idx_dtype = np.int32 if max(nnz, minor) < 2**31 else np.int64
        grp.create_dataset("indptr", data=np.arange(0, nnz + 1, k, dtype=np.int64).astype(idx_dtype))
        indices = grp.create_dataset("indices", shape=(nnz,), dtype=idx_dtype, chunks=(min(1 << 18, max(nnz, 1)),))
        data = grp.create_dataset("data", shape=(nnz,), dtype=np.float32, chunks=(min(1 << 18, max(nnz, 1)),))
        base = (np.arange(k) * stride).astype(np.int64)
        width = np.maximum(1, (np.floor((np.arange(k) + 1) * stride) - base).astype(np.int64))
        for start in range(0, major, a.block):
            stop = min(major, start + a.block)
            rows = stop - start
            cols = base + (rng.random((rows, k)) * width).astype(np.int64)
            vals = rng.lognormal(0.0, 1.0, (rows, k)).astype(np.float32)
            indices[start * k : stop * k] = cols.ravel().astype(idx_dtype)
            data[start * k : stop * k] = vals.ravel()
    size = os.path.getsize(a.out)
    print(f"{a.out}: {n} cells x {g} genes, {a.layout}, {nnz} stored values, {size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
