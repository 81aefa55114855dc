//! Versioned, fallible encoding of stored records: one version byte, then
//! JSON. A record that does not decode is an error, never a panic.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

const VERSION: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = vec![VERSION];
    serde_json::to_writer(&mut out, value).map_err(|e| Error::Internal(format!("encode: {e}")))?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&VERSION, rest)) => serde_json::from_slice(rest).map_err(|e| Error::Internal(format!("decode: {e}"))),
        Some((v, _)) => Err(Error::Internal(format!("decode: unknown record version {v}"))),
        None => Err(Error::Internal("decode: empty record".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let bytes = encode(&("a", 1u32)).unwrap();
        assert_eq!(decode::<(String, u32)>(&bytes).unwrap(), ("a".to_string(), 1));
        assert!(decode::<(String, u32)>(&[]).is_err());
        assert!(decode::<(String, u32)>(&[9, b'1']).is_err());
        assert!(decode::<(String, u32)>(&[1, b'{']).is_err());
    }
}
