//! A synthesised file carrying its kind's compression hint, so the HTTP
//! layer asks the file ([`SourceFile::compressibility`]) instead of parsing
//! its key.

use std::ops::Range;

use bytes::Bytes;

use super::file_key::SynthKey;
use crate::error::SourceError;
use crate::file::{Compressibility, FileIdentity, SourceFile};

/// `F` with the compressibility of the synthesised file it holds.
#[derive(Debug)]
pub(crate) struct Hinted<F> {
    file: F,
    compressibility: Compressibility,
}

impl<F: SourceFile> Hinted<F> {
    /// `file`, the bytes of `key`.
    pub(crate) fn new(file: F, key: SynthKey) -> Self {
        Self {
            file,
            compressibility: key.compressibility(),
        }
    }
}

impl<F: SourceFile> SourceFile for Hinted<F> {
    fn len(&self) -> u64 {
        self.file.len()
    }

    fn identity(&self) -> &FileIdentity {
        self.file.identity()
    }

    fn read_range(&self, range: Range<u64>) -> Result<Bytes, SourceError> {
        self.file.read_range(range)
    }

    fn reads_in_chunks(&self) -> bool {
        self.file.reads_in_chunks()
    }

    fn compressibility(&self) -> Compressibility {
        self.compressibility
    }
}
