//! Request bodies as JSON, for every handler that reads one (the API, the widget, Test Chat, the
//! import's lines): one place decides 400 `invalid_json` against 422 `validation_failed`.

use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Parses JSON text into `T`, reporting the path of the field at fault.
/// Errors: 400 `invalid_json` for syntax errors; 422 `validation_failed` for a wrong shape,
/// unknown field or unknown enum name.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body is a JSON object; serde's derived structs would also take a JSON array (their
    // fields by position), which the document does not allow.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            "the body must be a JSON object, not an array",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let path = if path == "." { String::new() } else { path };
                let message = if path.is_empty() {
                    inner.to_string()
                } else {
                    format!("{path}: {inner}")
                };
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    message,
                )
                .with_field(path)
            }
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("malformed JSON: {inner}"),
            ),
        }
    })?;
    Ok(value)
}
