# AnnData on-disk samples written by anndata 0.12.19, for reader conformance tests.
# From the testdata folder, with anndata and scanpy installed:  python scripts/make_anndata_samples.py
import warnings, numpy as np, pandas as pd, anndata as ad, scipy.sparse as sp
from pathlib import Path
FIXTURES = Path(__file__).resolve().parent.parent   # the testdata/ folder (this script lives in testdata/scripts/)
def scanpy_pbmc68k():
    """scanpy's bundled 10x_pbmc68k_reduced.h5ad, wherever scanpy is installed."""
    import scanpy.datasets
    return Path(scanpy.datasets.__file__).resolve().parent / "10x_pbmc68k_reduced.h5ad"
warnings.filterwarnings("ignore")
from importlib.metadata import version
print("anndata", version("anndata"), "zarr", version("zarr"), "h5py", version("h5py"))
out = FIXTURES / "anndata"
src = scanpy_pbmc68k()
a = ad.read_h5ad(src)                 # legacy (pre-0.7) on-disk layout, upgraded in memory
print("default zarr write format:", ad.settings.zarr_write_format)
a.write_h5ad(f"{out}/pbmc68k_reduced.modern.h5ad")                 # modern encoding, no compression
a.write_zarr(f"{out}/pbmc68k_reduced.zarr")                         # Zarr v2 (anndata default)
with ad.settings.override(zarr_write_format=3):
    a.write_zarr(f"{out}/pbmc68k_reduced.v3.zarr")                  # Zarr v3
# Same data with X as CSR and as CSC (gene-major) sparse matrices
b = a.copy(); b.X = sp.csr_matrix(np.where(np.abs(b.X) > 1.0, b.X, 0).astype(np.float32))
b.write_h5ad(f"{out}/pbmc68k_reduced.csr.h5ad")
c = b.copy(); c.X = sp.csc_matrix(c.X); c.write_h5ad(f"{out}/pbmc68k_reduced.csc.h5ad")

# A tiny object exercising every encoding a reader must understand.
rng = np.random.default_rng(0)
n, g = 6, 4
obs = pd.DataFrame({
    "cat": pd.Categorical(["a", "b", "a", None, "c", "b"], categories=["a", "b", "c"]),
    "ordered_cat": pd.Categorical(["lo", "hi", "lo", "hi", "lo", "hi"], categories=["lo", "hi"], ordered=True),
    "int_cat": pd.Categorical([1, 2, 1, 2, 1, 2]),
    "f32": np.array([0.5, 1.5, np.nan, 3.5, 4.5, 5.5], dtype=np.float32),
    "f64": np.linspace(0, 1, n),
    "i64": np.arange(n, dtype=np.int64),
    "u8": np.arange(n, dtype=np.uint8),
    "flag": np.array([True, False, True, True, False, False]),
    "str_obj": np.array(["x", "y", "z", "x", "y", "z"], dtype=object),
    "nullable_int": pd.array([1, None, 3, 4, None, 6], dtype="Int32"),
    "nullable_bool": pd.array([True, None, False, True, None, False], dtype="boolean"),
}, index=[f"cell{i}" for i in range(n)])
var = pd.DataFrame({"gene_symbols": ["G_A", "G_B", "", "G_A"], "hv": [True, False, True, False]},
                   index=[f"ENSG{i:04d}" for i in range(g)])
X = sp.csr_matrix(np.array([[0, 1, 0, 2], [3, 0, 0, 0], [0, 0, 4, 0], [5, 6, 0, 0], [0, 0, 0, 7], [8, 0, 9, 0]], dtype=np.float32))
t = ad.AnnData(X=X, obs=obs, var=var)
t.layers["counts_csc"] = sp.csc_matrix(X * 2)
t.layers["dense"] = X.toarray()
t.obsm["X_umap"] = rng.normal(size=(n, 2)).astype(np.float32)
t.obsm["X_umap_3d"] = rng.normal(size=(n, 3))
t.obsm["X_pca"] = rng.normal(size=(n, 5)).astype(np.float32)
t.obsm["velocity_umap"] = rng.normal(size=(n, 2)).astype(np.float32)
t.obsm["df_emb"] = pd.DataFrame({"u": np.arange(n, dtype=float)}, index=t.obs_names)
t.varm["PCs"] = rng.normal(size=(g, 3))
t.obsp["connectivities"] = sp.csr_matrix((np.ones(6), ([0, 1, 2, 3, 4, 5], [1, 0, 3, 2, 5, 4])), shape=(n, n))
t.varp["corr"] = sp.csr_matrix(np.eye(g))
t.uns["title"] = "tiny"
t.uns["nested"] = {"n": 3, "pi": 3.14, "arr": np.arange(3), "strs": np.array(["p", "q"], dtype=object), "flag": True}
t.uns["cellucid"] = {"schema": 1, "id": "tiny", "name": "Tiny encodings sample"}
t.raw = t.copy()
t.write_h5ad(f"{out}/tiny.h5ad")
t.write_h5ad(f"{out}/tiny.gzip.h5ad", compression="gzip")
t.write_zarr(f"{out}/tiny.zarr")
with ad.settings.override(zarr_write_format=3):
    t.write_zarr(f"{out}/tiny.v3.zarr")
print(t)
