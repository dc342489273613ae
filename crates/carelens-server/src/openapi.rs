//! The API's OpenAPI 3.1 document, served at `/api/v1/openapi.json` (a test checks it
//! against the routes the server really has, both ways).

/// The document.
pub(crate) const DOCUMENT: &str = include_str!("openapi.json");
