//! A query's identity: the SHA-256 of an unambiguous serialisation of its whole analysed
//! plan. It decides which earlier release answers a query again at no cost, and that the
//! query released under a request is the one approved, so two different plans must never
//! share it.
//!
//! The plan's display text is not enough (a `VALUES` list shows its first rows only, and
//! string literals and identifiers are printed unescaped, so a literal can spell plan
//! text). Here every node of the plan, subqueries included, in a fixed pre-order, is
//! written as length-prefixed fields:
//!
//! - its one-line display (operators, join types, sort directions, limits);
//! - how many inputs and subqueries it has (so the tree is read back one way only);
//! - its output schema: each field's qualifier, name, type and nullability, escaped;
//! - each of its expressions, as the derived `Debug` of the expression tree (strings
//!   escaped) with every literal replaced by the hex of an exact, typed encoding of its
//!   value (`ScalarValue`'s own `Debug` does not escape strings). A subquery inside an
//!   expression prints as `<subquery>`; its plan is written as nodes of its own.
//!
//! No field comes from a hash map (schema metadata is left out), so the identity is the
//! same in every process. A literal of a type this encoding does not cover (maps, unions)
//! makes the query rejected rather than given an identity that might be shared.

use std::fmt::Write as _;

use datafusion::arrow::array::Array;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, LogicalPlan};
use sha2::{Digest, Sha256};

use crate::rejection::{Rejection, RejectionKind};

/// What the serialisation starts with: a changed format gives every plan a new identity.
const FORMAT: &str = "carelens.plan/2";

/// The plan's identity, as hex.
pub(crate) fn plan_hash(plan: &LogicalPlan) -> Result<String, Rejection> {
    let mut hasher = Sha256::new();
    field(&mut hasher, FORMAT.as_bytes());
    let mut failure = None;
    let visited = plan.apply_with_subqueries(|node| {
        match node_fields(node) {
            Ok(fields) => {
                for f in fields {
                    field(&mut hasher, f.as_bytes());
                }
            }
            Err(rejection) => {
                failure = Some(rejection);
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if let Some(rejection) = failure {
        return Err(rejection);
    }
    visited.map_err(|e| unidentifiable(&e.strip_backtrace()))?;
    Ok(super::hex(hasher.finalize().as_slice()))
}

/// One length-prefixed field (also of the release-cache key).
pub(crate) fn field(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

/// The fields of one node (its inputs and subqueries are visited after it).
fn node_fields(node: &LogicalPlan) -> Result<Vec<String>, Rejection> {
    let mut subqueries = 0usize;
    node.apply_subqueries(|_| {
        subqueries += 1;
        Ok(TreeNodeRecursion::Jump)
    })
    .map_err(|e| unidentifiable(&e.strip_backtrace()))?;
    let mut fields = vec![
        node.display().to_string(),
        format!("{} inputs, {subqueries} subqueries", node.inputs().len()),
    ];
    let mut schema = String::new();
    for (qualifier, f) in node.schema().iter() {
        let _ = write!(
            schema,
            "{qualifier:?} {:?} {:?} {};",
            f.name(),
            f.data_type(),
            f.is_nullable()
        );
    }
    fields.push(schema);
    for expr in node.expressions() {
        fields.push(format!("{:?}", literals_encoded(expr)?));
    }
    Ok(fields)
}

/// `expr` with each literal replaced by the hex of its exact encoding.
fn literals_encoded(expr: Expr) -> Result<Expr, Rejection> {
    let mut failure = None;
    let encoded = expr
        .transform_up(|e| match e {
            Expr::Literal(value, _) => {
                let mut bytes = Vec::new();
                if let Err(rejection) = encode(&value, &mut bytes) {
                    failure = Some(rejection);
                }
                Ok(Transformed::yes(Expr::Literal(
                    ScalarValue::Utf8(Some(super::hex(&bytes))),
                    None,
                )))
            }
            other => Ok(Transformed::no(other)),
        })
        .map_err(|e| unidentifiable(&e.strip_backtrace()))?;
    match failure {
        Some(rejection) => Err(rejection),
        None => Ok(encoded.data),
    }
}

/// An exact, typed encoding of a literal: its type, whether it is null, and its value —
/// as text for scalars (a string as it is; a number as Rust prints it, which reads back
/// to the same value), element by element for lists and structs.
fn encode(value: &ScalarValue, out: &mut Vec<u8>) -> Result<(), Rejection> {
    let bytes = |out: &mut Vec<u8>, b: &[u8]| {
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
        out.extend_from_slice(b);
    };
    bytes(out, format!("{:?}", value.data_type()).as_bytes());
    if value.is_null() {
        out.push(0);
        return Ok(());
    }
    out.push(1);
    let element = |array: &dyn Array, i: usize| {
        ScalarValue::try_from_array(array, i).map_err(|e| unidentifiable(&e.strip_backtrace()))
    };
    match value {
        ScalarValue::List(array) => encode_elements(array.value(0).as_ref(), out, element)?,
        ScalarValue::LargeList(array) => encode_elements(array.value(0).as_ref(), out, element)?,
        ScalarValue::FixedSizeList(array) => {
            encode_elements(array.value(0).as_ref(), out, element)?
        }
        ScalarValue::Struct(array) => {
            for (name, column) in array.column_names().iter().zip(array.columns()) {
                bytes(out, name.as_bytes());
                encode(&element(column.as_ref(), 0)?, out)?;
            }
        }
        ScalarValue::Dictionary(_, inner) => encode(inner, out)?,
        ScalarValue::Map(_) | ScalarValue::Union(..) => {
            return Err(unidentifiable(&format!(
                "a literal of type {} cannot be given an exact identity",
                value.data_type()
            )));
        }
        scalar => bytes(out, scalar.to_string().as_bytes()),
    }
    Ok(())
}

fn encode_elements(
    values: &dyn Array,
    out: &mut Vec<u8>,
    element: impl Fn(&dyn Array, usize) -> Result<ScalarValue, Rejection>,
) -> Result<(), Rejection> {
    out.extend_from_slice(&(values.len() as u64).to_le_bytes());
    for i in 0..values.len() {
        encode(&element(values, i)?, out)?;
    }
    Ok(())
}

fn unidentifiable(why: &str) -> Rejection {
    Rejection::new(
        RejectionKind::Unsupported,
        format!("the query's plan cannot be given an exact identity: {why}"),
        "write the query without this construct; literals of map and union types are not \
         supported",
    )
}
