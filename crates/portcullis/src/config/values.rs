//! How values are written: durations (`Seconds`), lists (`List`), and the
//! names a settings section knows (`field_names`).

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};

/// Seconds, written as a whole number or as `30s`, `5m`, `1h`, `1d`, `1w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub i64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        let invalid = |shown: &str| {
            de::Error::custom(format!(
                "{shown} is not a duration: use whole seconds (300) or a number with a unit (30s, 5m, 1h, 1d)"
            ))
        };
        match Raw::deserialize(d).map_err(|_| invalid("the value"))? {
            Raw::Int(n) if n >= 0 => Ok(Self(n)),
            Raw::Int(n) => Err(invalid(&n.to_string())),
            Raw::Text(text) => {
                let text = text.trim();
                if let Ok(n) = text.parse::<i64>() {
                    return if n >= 0 {
                        Ok(Self(n))
                    } else {
                        Err(invalid(text))
                    };
                }
                let duration =
                    humantime::parse_duration(text).map_err(|_| invalid(&format!("{text:?}")))?;
                i64::try_from(duration.as_secs())
                    .map(Self)
                    .map_err(|_| invalid(text))
            }
        }
    }
}

impl Seconds {
    /// As a `Duration` (the value is never negative).
    #[must_use]
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0.unsigned_abs())
    }
}

/// A list written as a TOML array or as a comma-separated string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List(pub Vec<String>);

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(Self(match Raw::deserialize(d)? {
            Raw::One(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Raw::Many(v) => v,
        }))
    }
}

/// The setting names a section (a `#[derive(Deserialize)]` struct) reads,
/// as serde knows them: the sections share one flat namespace, so a name
/// none of them knows is a typo.
pub(super) fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut names = None;
    // The derived impl hands its field list to `deserialize_struct`; the
    // error that follows is the point, not a failure.
    let _ = T::deserialize(FieldNames(&mut names));
    names.unwrap_or_default()
}

/// A deserializer that only records the field list it is asked for.
struct FieldNames<'a>(&'a mut Option<&'static [&'static str]>);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Some(fields);
        Err(de::Error::custom("field names recorded"))
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(text: &str) -> Result<Seconds, String> {
        serde_json::from_value(serde_json::json!(text)).map_err(|e| e.to_string())
    }

    #[test]
    fn durations_take_seconds_or_units() {
        assert_eq!(seconds("300"), Ok(Seconds(300)));
        assert_eq!(seconds("5m"), Ok(Seconds(300)));
        assert_eq!(seconds("1d"), Ok(Seconds(86_400)));
        assert_eq!(seconds("1h 30m"), Ok(Seconds(5_400)));
        assert_eq!(
            serde_json::from_value::<Seconds>(serde_json::json!(42)).unwrap(),
            Seconds(42)
        );
        assert!(
            seconds("soon")
                .unwrap_err()
                .contains("\"soon\" is not a duration")
        );
        assert!(seconds("-5").is_err());
    }

    #[test]
    fn lists_take_arrays_or_commas() {
        let l: List = serde_json::from_value(serde_json::json!("Bearer, JWT")).unwrap();
        assert_eq!(l.0, ["Bearer", "JWT"]);
        let l: List = serde_json::from_value(serde_json::json!(["Bearer"])).unwrap();
        assert_eq!(l.0, ["Bearer"]);
    }

    #[test]
    fn field_names_are_the_written_names() {
        #[derive(Deserialize)]
        #[allow(dead_code)] // only its field list matters
        struct Section {
            bind: String,
            #[serde(rename = "static")]
            statics: Vec<String>,
        }
        assert_eq!(field_names::<Section>(), ["bind", "static"]);
    }
}
