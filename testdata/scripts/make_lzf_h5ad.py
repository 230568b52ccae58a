#!/usr/bin/env python3
"""Writes anndata/tiny.lzf.h5ad (and tiny.lzf.X.npy, its X): a small AnnData whose datasets use h5py's
LZF filter (id 32000), which the HDF5 reader must decode. Reproducible:

    python scripts/make_lzf_h5ad.py   # from the testdata folder; needs anndata + h5py
"""
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

rng = np.random.default_rng(5)
n, g = 300, 40
X = np.where(rng.random((n, g)) < 0.3, rng.lognormal(size=(n, g)), 0).astype(np.float32)
obs = pd.DataFrame(
    {"kind": pd.Categorical.from_codes(rng.integers(0, 4, n), ["a", "b", "c", "d"]), "score": rng.random(n)},
    index=[f"c{i}" for i in range(n)],
)
a = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(g)]))
a.obsm["X_umap"] = rng.normal(size=(n, 2)).astype(np.float32)
ANNDATA = Path(__file__).resolve().parent.parent / "anndata"   # testdata/anndata/
out = ANNDATA / "tiny.lzf.h5ad"
a.write_h5ad(out, compression="lzf")
np.save(ANNDATA / "tiny.lzf.X.npy", X)
print(out)
