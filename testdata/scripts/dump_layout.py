# Dump the on-disk layout of an .h5ad (via h5py) or a .zarr store (raw JSON metadata files).
# From the testdata folder:  python scripts/dump_layout.py anndata/tiny.h5ad > layouts/anndata_tiny.h5ad.txt
import sys, os, json, h5py
def dump_h5(path):
    f = h5py.File(path, "r")
    def attrs(o):
        out = {}
        for k, v in o.attrs.items():
            if hasattr(v, "tolist"): v = v.tolist()
            if isinstance(v, bytes): v = v.decode()
            out[k] = v
        return out
    print("/ (root)", attrs(f))
    def show(name, obj):
        if isinstance(obj, h5py.Dataset):
            dt = obj.dtype
            sdt = h5py.check_string_dtype(dt)
            print(f"D /{name} shape={obj.shape} dtype={dt}{' str(' + sdt.encoding + ')' if sdt else ''} chunks={obj.chunks} filters={obj.compression},{obj.compression_opts},shuffle={obj.shuffle} {attrs(obj)}")
        else:
            print(f"G /{name} {attrs(obj)}")
    f.visititems(show)
def dump_zarr(path):
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        rel = os.path.relpath(root, path)
        for fn in sorted(files):
            p = os.path.join(root, fn)
            if fn in (".zgroup", ".zattrs", ".zarray", "zarr.json"):
                txt = open(p).read()
                try: txt = json.dumps(json.loads(txt), separators=(",", ":"))
                except Exception: pass
                print(f"{rel}/{fn}: {txt}")
            elif fn == ".zmetadata":
                print(f"{rel}/{fn}: <consolidated, {os.path.getsize(p)} bytes>")
        chunk_files = [f for f in files if f not in (".zgroup", ".zattrs", ".zarray", "zarr.json", ".zmetadata")]
        if chunk_files:
            print(f"{rel}/ chunk files: {sorted(chunk_files)[:6]}{' ...' if len(chunk_files) > 6 else ''} ({len(chunk_files)})")
for p in sys.argv[1:]:
    print("=" * 20, p)
    (dump_zarr if os.path.isdir(p) else dump_h5)(p)
