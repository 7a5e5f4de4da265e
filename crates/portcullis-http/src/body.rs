//! Request bodies as DRF reads them: JSON, form-encoded or multipart, into
//! `request.data`, then DRF `CharField` rules per field.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use serde_json::{Map, Value};

use crate::{ApiError, AppState};

/// `request.data`: the parsed body of a token endpoint.
#[derive(Debug)]
pub struct DrfData {
    fields: Map<String, Value>,
}

/// DRF's parser selection and parsing (`Request._parse`).
impl FromRequest<AppState> for DrfData {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        parse_body(req, state.http().max_body_bytes).await
    }
}

/// Parse a request's body as DRF would (by its `Content-Type`), reading at
/// most `limit` bytes. Public so that the fuzz targets (`fuzz/`) drive the
/// very code the endpoints run.
pub async fn parse_body(req: Request, limit: usize) -> Result<DrfData, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let media_type = content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .map(|mt| mt.trim().to_ascii_lowercase())
        .unwrap_or_default();
    // A declared length over the limit is refused before reading a byte,
    // rather than waiting for a body that will be refused anyway.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(ApiError::PayloadTooLarge(limit));
    }

    if media_type == "multipart/form-data" {
        let multipart = Multipart::from_request(req, &()).await.map_err(|e| {
            ApiError::Parse(format!("Multipart form parse error - {}", e.body_text()))
        })?;
        return parse_multipart(multipart, limit).await;
    }

    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| ApiError::PayloadTooLarge(limit))?;
    // DRF: no body means empty data, whatever the content type.
    if body.is_empty() {
        return Ok(DrfData { fields: Map::new() });
    }
    match media_type.as_str() {
        "application/json" => parse_json(&body),
        "application/x-www-form-urlencoded" => Ok(DrfData {
            fields: form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect(),
        }),
        _ => Err(ApiError::UnsupportedMediaType(
            content_type.unwrap_or_default(),
        )),
    }
}

fn parse_json(body: &Bytes) -> Result<DrfData, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::Parse(
            crate::python_json::parse_error_detail(body)
                .unwrap_or_else(|| format!("JSON parse error - {e}")),
        )
    })?;
    match value {
        Value::Object(fields) => Ok(DrfData { fields }),
        // DRF's root serializer, given JSON null.
        Value::Null => Err(ApiError::NonField("No data provided".to_owned())),
        other => Err(ApiError::NonField(format!(
            "Invalid data. Expected a dictionary, but got {}.",
            python_type_name(&other)
        ))),
    }
}

async fn parse_multipart(mut multipart: Multipart, limit: usize) -> Result<DrfData, ApiError> {
    let mut fields = Map::new();
    let mut total = 0_usize;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                return Err(ApiError::Parse(format!(
                    "Multipart form parse error - {}",
                    e.body_text()
                )));
            }
        };
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        let is_file = field.file_name().is_some();
        let bytes = field.bytes().await.map_err(|e| {
            ApiError::Parse(format!("Multipart form parse error - {}", e.body_text()))
        })?;
        total = total.saturating_add(bytes.len());
        if total > limit {
            return Err(ApiError::PayloadTooLarge(limit));
        }
        // An uploaded file is not a string to a CharField.
        let value = if is_file {
            Value::Array(Vec::new())
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        };
        fields.insert(name, value);
    }
    Ok(DrfData { fields })
}

/// The Python type name DRF puts in "Expected a dictionary, but got …".
fn python_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

impl DrfData {
    /// Read required `CharField`s (`trim_whitespace=True`,
    /// `allow_blank=False`, `allow_null=False`), reporting every failing
    /// field at once, in the given order, as DRF does.
    pub fn strings<const N: usize>(
        &self,
        names: [&'static str; N],
    ) -> Result<[String; N], ApiError> {
        let mut errors = Vec::new();
        let values = names.map(|name| match char_field(self.fields.get(name)) {
            Ok(value) => value,
            Err(message) => {
                errors.push((name, message));
                String::new()
            }
        });
        if errors.is_empty() {
            Ok(values)
        } else {
            Err(ApiError::Fields(errors))
        }
    }

    /// An optional `CharField` (`required=False`): `None` when absent.
    pub fn optional_string(&self, name: &'static str) -> Result<Option<String>, ApiError> {
        match self.fields.get(name) {
            None => Ok(None),
            value => char_field(value)
                .map(Some)
                .map_err(|message| ApiError::Fields(vec![(name, message)])),
        }
    }
}

/// DRF `CharField.run_validation` for one value.
fn char_field(value: Option<&Value>) -> Result<String, &'static str> {
    let text = match value {
        None => return Err("This field is required."),
        Some(Value::Null) => return Err("This field may not be null."),
        Some(Value::String(s)) => s.clone(),
        // DRF coerces numbers with str().
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(_) | Value::Array(_) | Value::Object(_)) => {
            return Err("Not a valid string.");
        }
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("This field may not be blank.");
    }
    if trimmed.contains('\0') {
        return Err("Null characters are not allowed.");
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn char_field_follows_drf() {
        assert_eq!(char_field(None), Err("This field is required."));
        assert_eq!(
            char_field(Some(&json!(null))),
            Err("This field may not be null.")
        );
        assert_eq!(
            char_field(Some(&json!("  \t "))),
            Err("This field may not be blank.")
        );
        assert_eq!(char_field(Some(&json!(true))), Err("Not a valid string."));
        assert_eq!(char_field(Some(&json!([1]))), Err("Not a valid string."));
        assert_eq!(char_field(Some(&json!(12345))), Ok("12345".to_owned()));
        assert_eq!(char_field(Some(&json!(" pw \t"))), Ok("pw".to_owned()));
        assert_eq!(
            char_field(Some(&json!("a\u{0}b"))),
            Err("Null characters are not allowed.")
        );
    }
}
