//! Embeds the demo datasets (`datasets/demo/` at the repository root) in the
//! `cellucid` binary, so an installed or copied binary serves them from
//! anywhere: writes `$OUT_DIR/demo_files.rs`, the list of the demo's files
//! as (path relative to the demo folder, `include_bytes!` of the file).

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").ok_or("no CARGO_MANIFEST_DIR")?);
    let demo = manifest.join("../../datasets/demo").canonicalize()?;
    // Cargo rescans a directory given here for any change below it.
    println!("cargo:rerun-if-changed={}", demo.display());
    let mut files = Vec::new();
    collect(&demo, &mut files)?;
    files.sort();
    let mut code = String::from(
        "/// The demo's files: (path relative to the demo folder, with `/`, contents).\n\
         pub(crate) static DEMO_FILES: &[(&str, &[u8])] = &[\n",
    );
    for file in &files {
        let rel = file
            .strip_prefix(&demo)?
            .iter()
            .map(|part| {
                part.to_str()
                    .ok_or_else(|| format!("{}: not UTF-8", file.display()))
            })
            .collect::<Result<Vec<_>, _>>()?
            .join("/");
        let abs = file
            .to_str()
            .ok_or_else(|| format!("{}: not UTF-8", file.display()))?;
        writeln!(code, "    ({rel:?}, include_bytes!({abs:?})),")?;
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("no OUT_DIR")?);
    std::fs::write(out.join("demo_files.rs"), code)?;
    Ok(())
}

/// Every regular file under `dir`, recursively.
fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), Box<dyn Error>> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect(&entry.path(), files)?;
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    Ok(())
}
