//! Small, panic-free helpers shared by the format parsers: decimal and hex fields, the cost
//! check, constant-time comparison, and a `Debug` wrapper that hides digest bytes.

use std::fmt;

use subtle::ConstantTimeEq;

use crate::HashError;

/// Parses a field Django writes with `%d`: ASCII digits, no sign, no leading zero.
///
/// Django verifies by re-encoding and comparing whole strings, so `0100` or `+100` can never
/// match there; refusing them here keeps "parses" meaning "Django could have written it".
pub(crate) fn canonical_u32(field: &str, what: &'static str) -> Result<u32, HashError> {
    if field.len() > 1 && field.starts_with('0') {
        return Err(HashError::Malformed(what));
    }
    digits_u32(field, what)
}

/// Parses ASCII digits (leading zeros allowed, as libargon2's decoder allows them) into a
/// `u32`; anything else, including a value above `u32::MAX`, is `Malformed(what)`.
pub(crate) fn digits_u32(field: &str, what: &'static str) -> Result<u32, HashError> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HashError::Malformed(what));
    }
    field.parse::<u32>().map_err(|_| HashError::Malformed(what))
}

/// Refuses a cost above its limit, before any hashing.
pub(crate) fn check_cost(
    algorithm: &'static str,
    what: &'static str,
    value: u64,
    limit: u64,
) -> Result<(), HashError> {
    if value > limit {
        return Err(HashError::CostTooHigh {
            algorithm,
            what,
            value,
            limit,
        });
    }
    Ok(())
}

/// Decodes exactly `N` bytes of lowercase hex, the only case Python's `hexdigest()` writes
/// (Django compares the strings, so uppercase digits never match there either).
pub(crate) fn lower_hex<const N: usize>(
    field: &str,
    what: &'static str,
) -> Result<[u8; N], HashError> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if field.len() != 2 * N {
        return Err(HashError::Malformed(what));
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(field.as_bytes().chunks_exact(2)) {
        let [hi, lo] = pair else {
            return Err(HashError::Malformed(what));
        };
        match (nibble(*hi), nibble(*lo)) {
            (Some(h), Some(l)) => *byte = (h << 4) | l,
            _ => return Err(HashError::Malformed(what)),
        }
    }
    Ok(out)
}

/// Constant-time equality of a freshly derived value with the stored one. Lengths are public
/// (they come from the stored format), so a length mismatch may return early.
pub(crate) fn ct_eq(derived: &[u8], stored: &[u8]) -> bool {
    derived.ct_eq(stored).into()
}

/// Digest or salt bytes that `Debug` shows only by length: a stored hash is offline-crackable
/// material and has no business in logs.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Opaque<T>(pub(crate) T);

impl<T: AsRef<[u8]>> fmt::Debug for Opaque<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.as_ref().len())
    }
}
