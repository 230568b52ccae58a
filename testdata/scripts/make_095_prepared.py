# Cellucid 0.9.5 prepare(): writes "Cellucid-ready AnnData" stores (no legacy export folder exists in 0.9.5).
# From the testdata folder, with cellucid 0.9.5 and scanpy installed:  python scripts/make_095_prepared.py
# Run make_anndata_samples.py first: the sparse variant reads anndata/pbmc68k_reduced.csr.h5ad.
import anndata as ad, cellucid, warnings
from pathlib import Path
FIXTURES = Path(__file__).resolve().parent.parent   # the testdata/ folder (this script lives in testdata/scripts/)
def scanpy_pbmc68k():
    """scanpy's bundled 10x_pbmc68k_reduced.h5ad, wherever scanpy is installed."""
    import scanpy.datasets
    return Path(scanpy.datasets.__file__).resolve().parent / "10x_pbmc68k_reduced.h5ad"
from cellucid import prepare
print("cellucid", cellucid.__version__)
warnings.filterwarnings("ignore")
src = scanpy_pbmc68k()
adata = ad.read_h5ad(src)
out = FIXTURES / "prepared-0.9.5"
common = dict(data=adata, dataset_id="pbmc68k-reduced", dataset_name="PBMC 68k reduced (scanpy)",
              latent_key="X_pca", force=True)
print(prepare(f"{out}/pbmc68k_reduced.cellucid.h5ad", format="h5ad", **common))
print(prepare(f"{out}/pbmc68k_reduced.cellucid.zarr", format="zarr", **common))          # Zarr v2 (default)
print(prepare(f"{out}/pbmc68k_reduced.cellucid.v3.zarr", format="zarr", zarr_format=3, **common))
print(prepare(f"{out}/pbmc68k_reduced.cellucid.zarr.zip", format="zarr.zip", **common))
# Sparse variant: X as CSR in, CSC (gene-major) out.
sp_adata = ad.read_h5ad(FIXTURES / "anndata" / "pbmc68k_reduced.csr.h5ad")
print(prepare(f"{out}/pbmc68k_reduced.sparse.cellucid.h5ad", format="h5ad", data=sp_adata,
              dataset_id="pbmc68k-reduced-sparse", dataset_name="PBMC 68k reduced (sparse)",
              latent_key="X_pca", embedding_defaults={"2d": "X_umap"}, obs_keys=["bulk_labels", "n_counts"],
              dataset_description="Thresholded copy with a sparse X", citation_text="scanpy datasets",
              source_name="scanpy", source_url="https://scanpy.readthedocs.io", force=True))
print(prepare(f"{out}/pbmc68k_reduced.sparse.cellucid.zarr", format="zarr", data=sp_adata,
              dataset_id="pbmc68k-reduced-sparse", dataset_name="PBMC 68k reduced (sparse)", latent_key="X_pca", force=True))
