# Legacy "prepared export folder" writers: cellucid 0.9.4 (compact_v2, identity v3) and 0.9.1 (compact_v1 {index}, identity v2).
# Run with PYTHONPATH pointing at an unzipped wheel, e.g.
#   PYTHONPATH=<unzipped cellucid-0.9.4 wheel> python scripts/make_legacy_exports.py 0.9.4
# Output: testdata/exports-<version>/ (existing files there, e.g. SHA256SUMS, are left alone).
import sys, warnings, anndata as ad, cellucid
from pathlib import Path
FIXTURES = Path(__file__).resolve().parent.parent   # the testdata/ folder (this script lives in testdata/scripts/)
def scanpy_pbmc68k():
    """scanpy's bundled 10x_pbmc68k_reduced.h5ad, wherever scanpy is installed."""
    import scanpy.datasets
    return Path(scanpy.datasets.__file__).resolve().parent / "10x_pbmc68k_reduced.h5ad"
from cellucid import prepare
from cellucid.prepare_data import generate_datasets_manifest
warnings.filterwarnings("ignore")
ver = cellucid.__version__
assert ver == sys.argv[1], (ver, sys.argv[1])
src = scanpy_pbmc68k()
a = ad.read_h5ad(src)
root = str(FIXTURES / f"exports-{ver}")
base = dict(latent_space=a.obsm["X_pca"], obs=a.obs, var=a.var, gene_expression=a.X,
            connectivities=a.obsp["connectivities"], obs_categorical_dtype="uint8",
            dataset_name="PBMC 68k reduced (scanpy)", created_at="2026-01-01T00:00:00Z",
            dataset_description="scanpy bundled 10x_pbmc68k_reduced.h5ad", force=True)
if ver >= "0.9.3":
    emb = dict(embeddings={"X_umap": a.obsm["X_umap"]})
else:
    emb = dict(X_umap_2d=a.obsm["X_umap"])
# q8 + gzip-6 (the typical published form)
prepare(out_dir=f"{root}/pbmc68k-q8-gz", dataset_id="pbmc68k-q8-gz", compression=6,
        var_quantization=8, obs_continuous_quantization=8, **emb, **base)
# float32, uncompressed (the form the AnnData server mimics)
prepare(out_dir=f"{root}/pbmc68k-f32", dataset_id="pbmc68k-f32", compression=None,
        var_quantization=None, obs_continuous_quantization=None, **emb, **base)
# 16-bit quantization, gzip-9
prepare(out_dir=f"{root}/pbmc68k-q16-gz", dataset_id="pbmc68k-q16-gz", compression=9,
        var_quantization=16, obs_continuous_quantization=16, **emb, **base)
generate_datasets_manifest(root, default_dataset="pbmc68k-q8-gz")

# A dataset with 1D/2D/3D embeddings and a synthetic vector field (no biology: the field is a
# deterministic displacement so conformance tests have a vectors/ payload).
import numpy as np
umap = np.asarray(a.obsm["X_umap"], dtype=np.float64)
pca = np.asarray(a.obsm["X_pca"], dtype=np.float64)
vel2 = np.column_stack([np.sin(umap[:, 1] / 3.0), np.cos(umap[:, 0] / 3.0)]) * 0.5
vel3 = np.column_stack([pca[:, 1], -pca[:, 0], 0.1 * pca[:, 2]]) * 0.05
if ver >= "0.9.3":
    from cellucid import Embedding
    multi = dict(embeddings={"X_umap": a.obsm["X_umap"],
                             "X_pca": Embedding(a.obsm["X_pca"], columns=[0, 1, 2], label="PCA 1-3", source_key="X_pca"),
                             "X_pca_1d": Embedding(a.obsm["X_pca"], columns=[0], label="PC1", source_key="X_pca")},
                 embedding_defaults={"2d": "X_umap"},
                 vector_fields={"velocity": {"X_umap": vel2, "X_pca": vel3}},
                 vector_field_default="velocity")
else:
    multi = dict(X_umap_1d=pca[:, :1], X_umap_2d=a.obsm["X_umap"], X_umap_3d=pca[:, :3],
                 vector_fields={"velocity_umap_2d": vel2, "velocity_umap_3d": vel3},
                 vector_field_default="velocity_umap")
prepare(out_dir=f"{root}/pbmc68k-multi", dataset_id="pbmc68k-multi", compression=6,
        var_quantization=8, obs_continuous_quantization=8, obs_keys=["bulk_labels", "n_counts", "phase"],
        gene_identifiers=["HES4", "CD3D", "MS4A1", "LYZ"] if "CD3D" in set(a.var_names) else list(a.var_names[:4]),
        **multi, **{k: v for k, v in base.items()})
generate_datasets_manifest(root, default_dataset="pbmc68k-q8-gz")
