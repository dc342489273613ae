//! The keyed hash that orders each person's groups for L0 sampling.
//!
//! `keyed_hash(person, k1, …, kn)` is the first 64 bits of SHA-256 over the query's
//! secret and Arrow's row encoding of the values. The row encoding is defined for every
//! Arrow type and is unambiguous (each value is length-delimited, NULL has its own
//! marker), so the hash needs no cast of the keys to text — a cast that failed on some
//! values (a binary key that is not UTF-8) made the query fail on one person's row. The
//! hash cannot fail on any value.
//!
//! The person is part of the input, so two people who share groups A and B rank them
//! independently (with the groups alone, every person who has both would keep the same
//! one, and a group's count would be all-or-nothing for them). Which groups a person keeps
//! depends only on that person's rows and the secret.

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

/// `keyed_hash(args…)` under `secret`.
pub(crate) fn keyed_hash(secret: &str, args: Vec<Expr>) -> Expr {
    ScalarUDF::new_from_impl(KeyedHash {
        secret: secret.as_bytes().to_vec(),
        signature: Signature::variadic_any(Volatility::Immutable),
    })
    .call(args)
}

pub(crate) struct KeyedHash {
    secret: Vec<u8>,
    signature: Signature,
}

impl std::fmt::Debug for KeyedHash {
    // Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHash")
    }
}

impl PartialEq for KeyedHash {
    fn eq(&self, other: &Self) -> bool {
        self.secret == other.secret
    }
}

impl Eq for KeyedHash {}

impl Hash for KeyedHash {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.secret.hash(state);
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
        let hashes: UInt64Array = (0..rows)
            .map(|i| {
                let mut hasher = Sha256::new();
                hasher.update(&self.secret);
                hasher.update(encoded.row(i).as_ref());
                let digest = hasher.finalize();
                let mut first = [0u8; 8];
                first.copy_from_slice(&digest[..8]);
                Some(u64::from_le_bytes(first))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(hashes)))
    }
}
