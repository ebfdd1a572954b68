//! Stream data, decoded. FlateDecode without parameters (nearly every content stream, CMap
//! and font program) is inflated here straight into spare capacity, optionally only up to a
//! prefix; everything else goes through lopdf.

use std::borrow::Cow;

use lopdf::{Object, Stream};

/// Bytes one stream may inflate to (a decompression bomb stops here).
const MAX_DECODED: usize = 1 << 29;

/// The decoded data of `stream`; with `limit`, at least its first `limit` bytes (or all of it,
/// when shorter). Like lopdf, a corrupt zlib stream yields what was inflated before the damage,
/// and a stream whose zlib header is broken is read as raw deflate.
pub(super) fn stream_data(stream: &Stream, limit: Option<usize>) -> Result<Cow<'_, [u8]>, String> {
    let filter = match stream.dict.get(b"Filter") {
        Err(_) => return Ok(Cow::Borrowed(&stream.content)),
        Ok(Object::Name(name)) => Some(name.as_slice()),
        Ok(Object::Array(filters)) if filters.len() == 1 => filters.first().and_then(|f| f.as_name().ok()),
        Ok(_) => None,
    };
    let plain_params = match stream.dict.get(b"DecodeParms") {
        Err(_) | Ok(Object::Null) => true,
        Ok(Object::Dictionary(d)) => d.get(b"Predictor").ok().and_then(|p| p.as_i64().ok()).is_none_or(|p| p <= 1),
        Ok(_) => false,
    };
    if matches!(filter, Some(b"FlateDecode" | b"Fl")) && plain_params {
        return Ok(Cow::Owned(inflate(&stream.content, limit.unwrap_or(MAX_DECODED).min(MAX_DECODED))));
    }
    stream.decompressed_content().map(Cow::Owned).map_err(|e| e.to_string())
}

/// Inflates zlib `data` (raw deflate when the zlib header is broken), stopping once `limit`
/// bytes are out.
fn inflate(data: &[u8], limit: usize) -> Vec<u8> {
    let out = inflate_with(data, limit, true);
    if out.is_empty() && data.len() > 2 { inflate_with(data.get(2..).unwrap_or_default(), limit, false) } else { out }
}

fn inflate_with(data: &[u8], limit: usize, zlib: bool) -> Vec<u8> {
    use flate2::{Decompress, FlushDecompress, Status};
    let mut decoder = Decompress::new(zlib);
    let mut out: Vec<u8> = Vec::with_capacity(data.len().saturating_mul(4).clamp(1 << 12, limit.max(1 << 12)));
    loop {
        if out.len() >= limit {
            break;
        }
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(1 << 12));
        }
        let consumed = usize::try_from(decoder.total_in()).unwrap_or(usize::MAX);
        let Some(input) = data.get(consumed..) else { break };
        let before = (decoder.total_in(), decoder.total_out());
        match decoder.decompress_vec(input, &mut out, FlushDecompress::None) {
            Ok(Status::StreamEnd) | Err(_) => break,
            Ok(Status::Ok | Status::BufError) => {
                // No progress with room to spare: the input is exhausted (a truncated stream).
                if (decoder.total_in(), decoder.total_out()) == before && out.len() < out.capacity() {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).expect("compress");
        e.finish().expect("compress")
    }

    #[test]
    fn inflates_whole_prefixes_and_damage() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 253) as u8).collect();
        let z = zlib(&data);
        assert!(inflate(&z, usize::MAX) == data);
        let prefix = inflate(&z, 1000);
        assert!(prefix.len() >= 1000 && prefix[..1000] == data[..1000]);
        let cut = inflate(&z[..z.len() / 2], usize::MAX);
        assert!(!cut.is_empty() && data.starts_with(&cut));
        let mut broken = z.clone();
        broken[0] = 0;
        assert!(inflate(&broken, usize::MAX) == data, "raw deflate after a broken header");
        assert!(inflate(b"", usize::MAX).is_empty());
        assert!(inflate(b"garbage that is not deflate", usize::MAX).len() < 1 << 16);
    }
}
