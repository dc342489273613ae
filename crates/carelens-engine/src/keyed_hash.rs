//! The keyed hash that orders each person's groups for L0 sampling.
//!
//! `keyed_hash(person, k1, …, kn)` is SipHash-2-4 (Aumasson & Bernstein 2012), keyed by
//! 128 bits derived from the query's secret, over Arrow's row encoding of the values.
//! SipHash is a pseudorandom function built for short inputs: one 64-bit hash per (person,
//! group) row costs a few nanoseconds, where SHA-256 of the same bytes cost a block
//! compression and more. The row encoding is defined for every Arrow type and is
//! unambiguous (each value is length-delimited, NULL has its own marker), so the hash needs
//! no cast of the keys to text — a cast that failed on some values (a binary key that is
//! not UTF-8) made the query fail on one person's row. The hash cannot fail on any value.
//!
//! The person is part of the input, so two people who share groups A and B rank them
//! independently (with the groups alone, every person who has both would keep the same
//! one, and a group's count would be all-or-nothing for them). Which groups a person keeps
//! depends only on that person's rows and the secret.
//!
//! Privacy does not rest on the hash being unpredictable: any rule that chooses a person's
//! groups from that person's rows alone bounds their contribution to L0 groups. The secret
//! (fresh per query) keeps an analyst from steering which groups are kept.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use sha2::{Digest, Sha256};
use siphasher::sip::SipHasher24;

/// `keyed_hash(args…)` under `secret`.
pub(crate) fn keyed_hash(secret: &str, args: Vec<Expr>) -> Expr {
    ScalarUDF::new_from_impl(KeyedHash {
        key: sip_key(secret),
        signature: Signature::variadic_any(Volatility::Immutable),
    })
    .call(args)
}

/// SipHash's 128-bit key: the first 16 bytes of SHA-256 over the secret (any length of
/// secret, every bit of it used).
pub(crate) fn sip_key(secret: &str) -> [u64; 2] {
    let digest = Sha256::digest(secret.as_bytes());
    let word = |i: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[i..i + 8]);
        u64::from_le_bytes(bytes)
    };
    [word(0), word(8)]
}

pub(crate) struct KeyedHash {
    pub(crate) key: [u64; 2],
    pub(crate) signature: Signature,
}

impl std::fmt::Debug for KeyedHash {
    // Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHash")
    }
}

impl PartialEq for KeyedHash {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for KeyedHash {}

impl Hash for KeyedHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl ScalarUDFImpl for KeyedHash {
    fn name(&self) -> &str {
        "keyed_hash"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let converter = RowConverter::new(
            arrays
                .iter()
                .map(|a| SortField::new(a.data_type().clone()))
                .collect(),
        )?;
        let encoded = converter.convert_columns(&arrays)?;
        let hasher = SipHasher24::new_with_keys(self.key[0], self.key[1]);
        let hashes: UInt64Array = (0..rows)
            .map(|i| Some(hasher.hash(encoded.row(i).as_ref())))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(hashes)))
    }
}
