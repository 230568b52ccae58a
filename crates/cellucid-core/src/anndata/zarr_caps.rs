//! Capped decompression for Zarr chunks.
//!
//! `zarrs` inflates a chunk whole (gzip and zlib with `read_to_end`, zstd
//! to the size its frame claims, blosc to the size its header claims) and
//! only then compares the result with the size the array metadata implies:
//! a 200-byte chunk that inflates to 2 GiB costs 2 GiB first. This module
//! registers, ahead of `zarrs`' own codecs, a wrapper around every
//! bytes-to-bytes codec (gzip, zlib, zstd, blosc, and those inside a
//! sharding codec) whose `decode`
//!
//! * knows the most the chunk may decode to (what `zarrs` passes as the
//!   decoded representation: the chunk's shape times its element size, or,
//!   for variable-length data, [`budget::MAX_CHUNK_BYTES`]), and refuses anything
//!   larger than [`budget::MAX_CHUNK_BYTES`] or the memory budget;
//! * inflates gzip, zlib and zstd itself through a reader that stops one
//!   byte past that size, so a bomb costs at most the declared size;
//! * checks blosc's header (the size it will allocate) before `zarrs` does.
//!
//! SECURITY.md ("Hostile dataset files") documents the caps.

use std::borrow::Cow;
use std::io::Read;
use std::sync::{Arc, Once};

use zarrs::array::codec::api::{
    register_codec_v2, register_codec_v3, BytesToBytesCodecTraits, Codec, CodecError,
    CodecMetadataOptions, CodecOptions, CodecPluginV2, CodecPluginV3, CodecRuntimePluginV2,
    CodecRuntimePluginV3, CodecTraits, PartialDecoderCapability, PartialEncoderCapability,
    RecommendedConcurrency,
};
use zarrs::array::{ArrayBytesRaw, BytesRepresentation};
use zarrs::metadata::v2::MetadataV2;
use zarrs::metadata::v3::MetadataV3;
use zarrs::metadata::Configuration;
use zarrs::plugin::{ExtensionName, PluginCreateError, PluginUnsupportedError, ZarrVersion};

use crate::budget;

/// Puts the capped codecs in front of `zarrs`' own (once per process).
pub(super) fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // The handle unregisters when used; the plugin stays for the
        // process lifetime, so it is dropped unused.
        let _v3 = register_codec_v3(CodecRuntimePluginV3::new(
            |name: &str| Family::of(name).is_some(),
            create_v3,
        ));
        // Zarr v2 arrays build their codecs from v2 metadata directly.
        let _v2 = register_codec_v2(CodecRuntimePluginV2::new(
            |name: &str| Family::of(name).is_some(),
            create_v2,
        ));
    });
}

/// The codec families the wrapper knows how to bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Gzip,
    Zlib,
    Zstd,
    Blosc,
}

impl Family {
    fn of(name: &str) -> Option<Self> {
        let name = name.rsplit('.').next().unwrap_or(name);
        match name {
            "gzip" => Some(Self::Gzip),
            "zlib" => Some(Self::Zlib),
            "zstd" => Some(Self::Zstd),
            "blosc" => Some(Self::Blosc),
            _ => None,
        }
    }
}

/// `codec` wrapped when it is a bytes-to-bytes codec of a known family.
fn wrap(codec: Codec, name: &str) -> Codec {
    match (codec, Family::of(name)) {
        (Codec::BytesToBytes(inner), Some(family)) => {
            Codec::BytesToBytes(Arc::new(Capped { inner, family }))
        }
        (other, _) => other,
    }
}

fn create_v3(metadata: &MetadataV3) -> Result<Codec, PluginCreateError> {
    let name = metadata.name();
    for plugin in inventory::iter::<CodecPluginV3> {
        if plugin.match_name(name) {
            return Ok(wrap(plugin.create(metadata)?, name));
        }
    }
    Err(PluginUnsupportedError::new(name.to_owned(), "codec".to_owned()).into())
}

fn create_v2(metadata: &MetadataV2) -> Result<Codec, PluginCreateError> {
    let name = metadata.id();
    for plugin in inventory::iter::<CodecPluginV2> {
        if plugin.match_name(name) {
            return Ok(wrap(plugin.create(metadata)?, name));
        }
    }
    Err(PluginUnsupportedError::new(name.to_owned(), "codec".to_owned()).into())
}

/// A bytes-to-bytes codec whose decoding stops at the declared size.
#[derive(Debug)]
struct Capped {
    inner: Arc<dyn BytesToBytesCodecTraits>,
    family: Family,
}

/// The most a chunk may decode to, from what `zarrs` expects of it.
fn bound(decoded: &BytesRepresentation) -> Result<u64, CodecError> {
    let cap = budget::chunk_cap();
    match decoded {
        BytesRepresentation::FixedSize(n) | BytesRepresentation::BoundedSize(n) => {
            if *n > cap {
                Err(CodecError::Other(format!(
                    "a chunk declares {} decoded, more than the {} a chunk may hold",
                    budget::human(*n),
                    budget::human(cap)
                )))
            } else {
                Ok(*n)
            }
        }
        BytesRepresentation::UnboundedSize => Ok(cap),
    }
}

/// Reads `reader` to its end, failing one byte past `max`.
fn read_capped(reader: impl Read, max: u64, exact: bool) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    if exact {
        out.try_reserve_exact(usize::try_from(max).unwrap_or(usize::MAX))
            .map_err(|err| CodecError::Other(format!("cannot allocate a chunk: {err}")))?;
    }
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|err| CodecError::IOError(Arc::new(err)))?;
    if out.len() as u64 > max {
        return Err(CodecError::Other(format!(
            "a chunk inflates past its declared size of {}",
            budget::human(max)
        )));
    }
    Ok(out)
}

impl ExtensionName for Capped {
    fn name(&self, version: ZarrVersion) -> Option<Cow<'static, str>> {
        self.inner.name(version)
    }
}

impl CodecTraits for Capped {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn configuration(
        &self,
        version: ZarrVersion,
        options: &CodecMetadataOptions,
    ) -> Option<Configuration> {
        self.inner.configuration(version, options)
    }

    fn partial_decoder_capability(&self) -> PartialDecoderCapability {
        // Partial decoding would bypass `decode`: decode whole chunks.
        PartialDecoderCapability {
            partial_read: false,
            partial_decode: false,
        }
    }

    fn partial_encoder_capability(&self) -> PartialEncoderCapability {
        self.inner.partial_encoder_capability()
    }
}

impl BytesToBytesCodecTraits for Capped {
    fn into_dyn(self: Arc<Self>) -> Arc<dyn BytesToBytesCodecTraits> {
        self as Arc<dyn BytesToBytesCodecTraits>
    }

    fn recommended_concurrency(
        &self,
        decoded_representation: &BytesRepresentation,
    ) -> Result<RecommendedConcurrency, CodecError> {
        self.inner.recommended_concurrency(decoded_representation)
    }

    fn encoded_representation(
        &self,
        decoded_representation: &BytesRepresentation,
    ) -> BytesRepresentation {
        self.inner.encoded_representation(decoded_representation)
    }

    fn encode<'a>(
        &self,
        decoded_value: ArrayBytesRaw<'a>,
        options: &CodecOptions,
    ) -> Result<ArrayBytesRaw<'a>, CodecError> {
        self.inner.encode(decoded_value, options)
    }

    fn decode<'a>(
        &self,
        encoded_value: ArrayBytesRaw<'a>,
        decoded_representation: &BytesRepresentation,
        options: &CodecOptions,
    ) -> Result<ArrayBytesRaw<'a>, CodecError> {
        let max = bound(decoded_representation)?;
        let exact = matches!(decoded_representation, BytesRepresentation::FixedSize(_));
        // Parallel requests share the decoding budget: what this chunk may
        // decode to (for variable-length data, an estimate from its stored
        // size; the cap still bounds it).
        let reserve = if exact {
            max
        } else {
            max.min((encoded_value.len() as u64).saturating_mul(8).max(1 << 20))
        };
        let _lease = budget::decoding()
            .reserve(|| "decoding a Zarr chunk".to_owned(), reserve)
            .map_err(|err| CodecError::Other(err.to_string()))?;
        let bytes: &[u8] = &encoded_value;
        match self.family {
            Family::Gzip => {
                read_capped(flate2::read::GzDecoder::new(bytes), max, exact).map(Cow::Owned)
            }
            Family::Zlib => {
                read_capped(flate2::read::ZlibDecoder::new(bytes), max, exact).map(Cow::Owned)
            }
            Family::Zstd => {
                let decoder = zstd::stream::read::Decoder::with_buffer(bytes)
                    .map_err(|err| CodecError::IOError(Arc::new(err)))?;
                read_capped(decoder, max, exact).map(Cow::Owned)
            }
            Family::Blosc => {
                // The header's nbytes (bytes 4..8) is what blosc allocates.
                let claimed = bytes
                    .get(4..8)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(u32::from_le_bytes)
                    .ok_or_else(|| CodecError::Other("a blosc chunk is truncated".into()))?;
                if u64::from(claimed) > max {
                    return Err(CodecError::Other(format!(
                        "a blosc chunk claims {} decoded, more than its declared {}",
                        budget::human(u64::from(claimed)),
                        budget::human(max)
                    )));
                }
                self.inner
                    .decode(encoded_value, decoded_representation, options)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn capped(family: Family, name: &str, configuration: &serde_json::Value) -> Capped {
        let metadata: MetadataV3 = serde_json::from_value(
            serde_json::json!({"name": name, "configuration": configuration}),
        )
        .unwrap();
        let inner = inventory::iter::<CodecPluginV3>
            .into_iter()
            .find(|p| p.match_name(name))
            .and_then(|p| match p.create(&metadata).ok()? {
                Codec::BytesToBytes(c) => Some(c),
                _ => None,
            })
            .unwrap();
        Capped { inner, family }
    }

    #[test]
    fn a_bomb_stops_one_byte_past_the_declared_size() {
        let bomb = zlib(&vec![0u8; 8 << 20]);
        assert!(bomb.len() < 64 << 10);
        let codec = capped(
            Family::Zlib,
            "numcodecs.zlib",
            &serde_json::json!({"level": 1}),
        );
        let err = codec
            .decode(
                Cow::Borrowed(&bomb),
                &BytesRepresentation::FixedSize(200),
                &CodecOptions::default(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("past its declared size"), "{err}");
        // The honest size decodes.
        let ok = codec
            .decode(
                Cow::Borrowed(&bomb),
                &BytesRepresentation::FixedSize(8 << 20),
                &CodecOptions::default(),
            )
            .unwrap();
        assert_eq!(ok.len(), 8 << 20);
    }

    #[test]
    fn a_chunk_declared_over_the_cap_is_refused_before_decoding() {
        let codec = capped(
            Family::Zlib,
            "numcodecs.zlib",
            &serde_json::json!({"level": 1}),
        );
        let err = codec
            .decode(
                Cow::Borrowed(&zlib(b"x")[..]),
                &BytesRepresentation::FixedSize(2 << 30),
                &CodecOptions::default(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("2 GiB"), "{err}");
    }

    #[test]
    fn a_blosc_header_claiming_more_than_declared_is_refused() {
        let codec = capped(
            Family::Blosc,
            "blosc",
            &serde_json::json!({"cname": "lz4", "clevel": 5, "shuffle": "shuffle", "typesize": 4, "blocksize": 0}),
        );
        // version 2, versionlz 1, flags, typesize 4, nbytes 2 GiB, ...
        let mut header = vec![2u8, 1, 0x01, 4];
        header.extend_from_slice(&(2u32 << 30).to_le_bytes());
        header.extend_from_slice(&[0u8; 8]);
        let err = codec
            .decode(
                Cow::Borrowed(&header),
                &BytesRepresentation::FixedSize(200),
                &CodecOptions::default(),
            )
            .unwrap_err();
        assert!(err.to_string().contains("blosc"), "{err}");
    }
}
