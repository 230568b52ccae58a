//! `cellucid session inspect FILE`: validate a bundle, print its manifest.

use std::io::Write;

use cellucid_core::session::{validate_bundle_file, BundleError, BundleLimits};
use serde_json::json;

use crate::args::SessionInspectArgs;
use crate::error::CliError;

/// Validates `args.file` and prints what it holds on stdout.
pub(crate) fn inspect(args: &SessionInspectArgs) -> Result<(), CliError> {
    let path = &args.file;
    if !path.is_file() {
        return Err(CliError::usage(format!(
            "{}: no such file (pass a .cellucid-session bundle)",
            path.display()
        )));
    }
    let limits = BundleLimits {
        max_inflated_bytes: args.max_inflated_bytes,
    };
    let summary = validate_bundle_file(path, limits).map_err(|err| match err {
        BundleError::Invalid(why) => CliError::operator(format!(
            "{} is not a valid session bundle: {why}",
            path.display()
        )),
        other => CliError::operator(format!("{}: {other}", path.display())),
    })?;
    let mut out = String::new();
    if args.json {
        let chunks: Vec<_> = summary
            .chunks
            .iter()
            .map(|c| {
                json!({"id": c.id, "kind": c.kind, "codec": c.codec, "priority": c.priority,
                       "storedBytes": c.stored_bytes, "uncompressedBytes": c.uncompressed_bytes})
            })
            .collect();
        let doc = json!({
            "valid": true,
            "format": summary.version.number(),
            "bytes": summary.bytes,
            "chunks": chunks,
            "manifest": summary.manifest,
        });
        out.push_str(&doc.to_string());
        out.push('\n');
    } else {
        use std::fmt::Write as _;
        let _ = writeln!(out, "{}: valid Cellucid session bundle", path.display());
        let _ = writeln!(
            out,
            "format {} ({}), {} bytes, {} chunk{}",
            summary.version.number(),
            match summary.version.number() {
                1 => "CELLUCID_SESSION, 0.9.4 viewers",
                _ => "CELLUCID_SESSION/2, 0.9.5 viewers",
            },
            summary.bytes,
            summary.chunks.len(),
            if summary.chunks.len() == 1 { "" } else { "s" }
        );
        let id_width = summary
            .chunks
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let _ = writeln!(
            out,
            "  {:<id_width$}  {:<6}  {:<5}  {:<5}  {:>12}  {:>12}",
            "id", "kind", "codec", "prio", "stored", "decoded"
        );
        for c in &summary.chunks {
            let _ = writeln!(
                out,
                "  {:<id_width$}  {:<6}  {:<5}  {:<5}  {:>12}  {:>12}",
                c.id, c.kind, c.codec, c.priority, c.stored_bytes, c.uncompressed_bytes
            );
        }
        let _ = writeln!(out, "manifest:");
        let pretty = serde_json::to_string_pretty(&summary.manifest).unwrap_or_default();
        let _ = writeln!(out, "{pretty}");
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|err| CliError::operator(format!("cannot write to stdout: {err}")))
}
