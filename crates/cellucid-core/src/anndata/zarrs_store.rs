//! The adapter that lets `zarrs` read from any [`KeyStore`] (a confined
//! folder or a zip archive: `store.rs`).

use std::io;
use std::sync::Arc;

use zarrs::storage::byte_range::ByteRangeIterator;
use zarrs::storage::{
    MaybeBytes, MaybeBytesIterator, ReadableStorageTraits, StorageError, StoreKey,
};

use super::store::KeyStore;

/// Lets `zarrs` read from any [`KeyStore`].
#[derive(Debug, Clone)]
pub struct ZarrsStore(pub Arc<dyn KeyStore>);

fn storage_error(err: io::Error) -> StorageError {
    StorageError::IOError(Arc::new(err))
}

impl ReadableStorageTraits for ZarrsStore {
    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        let Some(bytes) = self.0.get(key.as_str()).map_err(storage_error)? else {
            return Ok(None);
        };
        let size = bytes.len() as u64;
        let iter = byte_ranges.map(move |range| {
            let r = range.to_range(size);
            if r.end > size || r.start > r.end {
                return Err(StorageError::Other(format!(
                    "byte range {}..{} outside a value of {size} bytes",
                    r.start, r.end
                )));
            }
            Ok(bytes.slice(r.start as usize..r.end as usize))
        });
        Ok(Some(Box::new(iter)))
    }

    fn get(&self, key: &StoreKey) -> Result<MaybeBytes, StorageError> {
        self.0.get(key.as_str()).map_err(storage_error)
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        Ok(self
            .0
            .get(key.as_str())
            .map_err(storage_error)?
            .map(|b| b.len() as u64))
    }

    fn supports_get_partial(&self) -> bool {
        true
    }
}
