"""Writes the two small .h5ad seeds of fuzz/corpus/h5ad_open (docs/FUZZING.md).

The repository's .h5ad fixtures are 70 KB and more; a fuzzer mutates small
files far faster, so these hold only what AnnData::open reads: the root
attributes, obs and var dataframes (an index, one float column), a dense X
and one obsm embedding, in the layout anndata 0.12 writes. One file uses
HDF5's oldest object formats (what h5py and anndata write by default: a
version 0 superblock, symbol-table groups), the other the newest (libver
"latest": version 3 superblock, compact link storage), and gzip chunks.

Needs h5py and numpy: python3 -m venv /tmp/h5 && /tmp/h5/bin/pip install h5py
Run from the repository root: /tmp/h5/bin/python fuzz/seeds/make_h5ad_seeds.py
"""

import h5py
import numpy as np

STR = h5py.string_dtype()


def attrs(node, kind, version):
    node.attrs["encoding-type"] = kind
    node.attrs["encoding-version"] = version


def frame(f, name, index, columns):
    g = f.create_group(name)
    attrs(g, "dataframe", "0.2.0")
    g.attrs["_index"] = "_index"
    g.attrs.create("column-order", list(columns), dtype=STR)
    d = g.create_dataset("_index", data=np.array(index, dtype=object), dtype=STR)
    attrs(d, "string-array", "0.2.0")
    for column, values in columns.items():
        attrs(g.create_dataset(column, data=values), "array", "0.2.0")


def write(path, libver, **dataset_options):
    with h5py.File(path, "w", libver=libver) as f:
        attrs(f, "anndata", "0.1.0")
        frame(f, "obs", [f"c{i}" for i in range(4)], {"f32": np.arange(4, dtype=np.float32)})
        frame(f, "var", ["g0", "g1", "g2"], {})
        x = f.create_dataset("X", data=np.arange(12, dtype=np.float32).reshape(4, 3), **dataset_options)
        attrs(x, "array", "0.2.0")
        obsm = f.create_group("obsm")
        attrs(obsm, "dict", "0.1.0")
        umap = obsm.create_dataset("X_umap", data=np.ones((4, 2), dtype=np.float32), **dataset_options)
        attrs(umap, "array", "0.2.0")


write("fuzz/corpus/h5ad_open/oldest-formats.h5ad", "earliest")
write("fuzz/corpus/h5ad_open/newest-formats-gzip.h5ad", "latest", chunks=True, compression="gzip")
