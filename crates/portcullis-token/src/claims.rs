//! A decoded or freshly built token: an ordered claim set.
//!
//! Claims keep their insertion order so that encoded payloads read exactly
//! like simplejwt's: `token_type, exp, iat, jti, [refresh_exp,] user_id, …`.

use std::borrow::Cow;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::{TokenError, TokenSettings};

/// The three simplejwt token classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// `AccessToken`: short-lived, authenticates requests.
    Access,
    /// `RefreshToken`: long-lived, trades for access tokens.
    Refresh,
    /// `SlidingToken`: authenticates and refreshes itself.
    Sliding,
}

impl TokenType {
    /// The `token_type` claim value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Refresh => "refresh",
            Self::Sliding => "sliding",
        }
    }

    /// The simplejwt class name, as shown in the `messages` list of a 401.
    #[must_use]
    pub fn class_name(self) -> &'static str {
        match self {
            Self::Access => "AccessToken",
            Self::Refresh => "RefreshToken",
            Self::Sliding => "SlidingToken",
        }
    }

    /// Parse a class name as `AUTH_TOKEN_CLASSES` lists it (the last dotted
    /// component is enough: `rest_framework_simplejwt.tokens.AccessToken`).
    #[must_use]
    pub fn from_class_name(name: &str) -> Option<Self> {
        match name.rsplit('.').next()? {
            "AccessToken" => Some(Self::Access),
            "SlidingToken" => Some(Self::Sliding),
            "RefreshToken" => Some(Self::Refresh),
            _ => None,
        }
    }
}

/// What a token says about its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserIdClaim {
    /// The claim is absent.
    Missing,
    /// The claim is present but falsy in Python's sense (`""`, `0`, `null`,
    /// `false`): simplejwt's refresh serializer skips its user checks then.
    Falsy,
    /// An integer id, from a JSON integer or a string of digits (simplejwt
    /// ≥ 5.5.1 writes `"1"`; older versions wrote `1`).
    Id(i64),
    /// Present but not an integer id (`"abc"`).
    NotAnId,
}

/// A claim set in order: a small vector map. A token has a handful of
/// claims with short names, so a linear scan finds one faster than hashing
/// its name does, and building the set from a payload costs no hashing at
/// all (a `serde_json::Map` is an `IndexMap` hashed with `SipHash`: filling and
/// reading one was a tenth of a `GET /api/users/me/`). The signature is
/// checked before a payload is read, so only a signer we trust can make
/// the scans long.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    entries: Vec<(Name, Value)>,
}

/// A claim name: simplejwt's and the registered ones are shared, not
/// copied (an allocation each, five a token).
pub(crate) type Name = Cow<'static, str>;

/// `name`, shared when it is a common claim name.
pub(crate) fn claim_name(name: &str) -> Name {
    const COMMON: [&str; 10] = [
        "token_type",
        "exp",
        "iat",
        "jti",
        "user_id",
        "refresh_exp",
        "nbf",
        "iss",
        "aud",
        "sub",
    ];
    COMMON.iter().find(|common| **common == name).map_or_else(
        || Cow::Owned(name.to_owned()),
        |common| Cow::Borrowed(*common),
    )
}

impl Claims {
    /// No claims.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// No claims, with room for `capacity`.
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Vec::with_capacity(capacity),
        }
    }

    /// One claim.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value)
    }

    /// One claim, to change in place.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value)
    }

    /// Whether the claim is present.
    #[must_use]
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Set a claim; one already present keeps its position and its old
    /// value is returned (as `serde_json::Map::insert` does).
    pub fn insert(&mut self, name: impl Into<Name>, value: Value) -> Option<Value> {
        let name = name.into();
        if let Some(slot) = self.get_mut(&name) {
            return Some(std::mem::replace(slot, value));
        }
        self.entries.push((name, value));
        None
    }

    /// How many claims there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The claims, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.into_iter()
    }

    /// The claim names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(name, _)| name.as_ref())
    }
}

impl<'a> IntoIterator for &'a Claims {
    type Item = (&'a str, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Name, Value)>,
        fn(&'a (Name, Value)) -> (&'a str, &'a Value),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries
            .iter()
            .map(|(name, value)| (name.as_ref(), value))
    }
}

/// As for a `serde_json::Map`: the same claims with the same values, in
/// any order.
impl PartialEq for Claims {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .all(|(name, value)| other.get(name) == Some(value))
    }
}

impl From<Map<String, Value>> for Claims {
    fn from(map: Map<String, Value>) -> Self {
        Self {
            entries: map
                .into_iter()
                .map(|(name, value)| (Name::Owned(name), value))
                .collect(),
        }
    }
}

/// A JSON object, claims in order.
impl Serialize for Claims {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.entries.len()))?;
        for (name, value) in &self.entries {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// A set of claims, as decoded from a verified token or about to be signed.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    claims: Claims,
}

impl Token {
    /// Wrap a claim set (a [`Claims`] or a `serde_json::Map`).
    #[must_use]
    pub fn from_claims(claims: impl Into<Claims>) -> Self {
        Self {
            claims: claims.into(),
        }
    }

    /// All claims, in order.
    #[must_use]
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// One claim.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// Set a claim, keeping its position if it already exists.
    pub fn set(&mut self, name: &str, value: Value) {
        if let Some(slot) = self.claims.get_mut(name) {
            *slot = value;
        } else {
            self.claims.entries.push((claim_name(name), value));
        }
    }

    /// The token id (`JTI_CLAIM`), when it is a string.
    #[must_use]
    pub fn jti(&self, settings: &TokenSettings) -> Option<&str> {
        self.claims.get(&settings.jti_claim).and_then(Value::as_str)
    }

    /// A time claim as whole Unix seconds.
    #[must_use]
    pub fn time_claim(&self, name: &str) -> Option<i64> {
        self.claims.get(name).and_then(numeric_date)
    }

    /// The user id claim (`USER_ID_CLAIM`).
    #[must_use]
    pub fn user_id(&self, settings: &TokenSettings) -> UserIdClaim {
        match self.claims.get(&settings.user_id_claim) {
            None => UserIdClaim::Missing,
            Some(value) if !is_truthy(value) => UserIdClaim::Falsy,
            Some(Value::Number(n)) => n.as_i64().map_or(UserIdClaim::NotAnId, UserIdClaim::Id),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map_or(UserIdClaim::NotAnId, UserIdClaim::Id),
            Some(_) => UserIdClaim::NotAnId,
        }
    }

    /// simplejwt's `Token.verify`: `exp` present and not past, `jti`
    /// present, and — unless `expected` is `None` (the untyped token of the
    /// verify endpoint) — the right `token_type`.
    pub fn verify(
        &self,
        settings: &TokenSettings,
        now: i64,
        expected: Option<TokenType>,
    ) -> Result<(), TokenError> {
        self.check_exp("exp", now, settings.leeway)?;
        if !self.claims.contains_key(&settings.jti_claim) {
            return Err(TokenError::NoId);
        }
        if let (Some(expected), Some(type_claim)) = (expected, &settings.token_type_claim) {
            match self.claims.get(type_claim) {
                None => return Err(TokenError::NoType),
                Some(Value::String(t)) if t == expected.as_str() => {}
                Some(_) => return Err(TokenError::WrongType),
            }
        }
        Ok(())
    }

    /// simplejwt's `check_exp(claim)`: the claim must exist and lie after
    /// now minus the leeway.
    pub fn check_exp(&self, claim: &str, now: i64, leeway: i64) -> Result<(), TokenError> {
        let value = self
            .claims
            .get(claim)
            .ok_or_else(|| TokenError::MissingClaim(claim.to_owned()))?;
        let at = numeric_date(value).ok_or(TokenError::Invalid)?;
        if at <= now.saturating_sub(leeway) {
            return Err(TokenError::ClaimExpired(claim.to_owned()));
        }
        Ok(())
    }
}

/// A JSON number as whole seconds, truncated like Python's `int()`.
/// Strings, booleans and out-of-range numbers are not dates.
pub(crate) fn numeric_date(value: &Value) -> Option<i64> {
    let Value::Number(n) = value else { return None };
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // i64::MAX is not exactly representable; stay strictly inside the range.
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    (f.is_finite() && f.abs() < 9.0e18).then(|| f.trunc() as i64)
}

/// Python truthiness of a JSON value.
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn token(value: Value) -> Token {
        let Value::Object(claims) = value else {
            panic!("an object")
        };
        Token::from_claims(claims)
    }

    /// What `serde_json::Map` (an `IndexMap`) did: a repeated claim keeps
    /// its first position and takes the last value; equality ignores order;
    /// serialization keeps it.
    #[test]
    fn claims_behave_like_the_ordered_map_they_replace() {
        let mut claims = Claims::new();
        assert_eq!(claims.insert("b", json!(1)), None);
        assert_eq!(claims.insert("a".to_owned(), json!(2)), None);
        assert_eq!(claims.insert(claim_name("b"), json!(3)), Some(json!(1)));
        assert_eq!(claims.keys().collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(claims.get("b"), Some(&json!(3)));
        assert!(claims.contains_key("a") && !claims.contains_key("c"));
        assert_eq!(serde_json::to_string(&claims).unwrap(), r#"{"b":3,"a":2}"#);
        let Value::Object(reordered) = json!({"a": 2, "b": 3}) else {
            panic!("an object")
        };
        assert_eq!(claims, Claims::from(reordered));
        let Value::Object(other) = json!({"a": 2, "b": 4}) else {
            panic!("an object")
        };
        assert_ne!(claims, Claims::from(other));
        assert_ne!(claims, Claims::new());
    }

    #[test]
    fn user_id_accepts_strings_and_integers() {
        let s = TokenSettings::default();
        assert_eq!(
            token(json!({"user_id": "7"})).user_id(&s),
            UserIdClaim::Id(7)
        );
        assert_eq!(token(json!({"user_id": 7})).user_id(&s), UserIdClaim::Id(7));
        assert_eq!(
            token(json!({"user_id": "abc"})).user_id(&s),
            UserIdClaim::NotAnId
        );
        assert_eq!(
            token(json!({"user_id": ""})).user_id(&s),
            UserIdClaim::Falsy
        );
        assert_eq!(token(json!({"user_id": 0})).user_id(&s), UserIdClaim::Falsy);
        assert_eq!(token(json!({})).user_id(&s), UserIdClaim::Missing);
    }

    #[test]
    fn verify_checks_in_simplejwt_order() {
        let s = TokenSettings::default();
        let now = 1_000;
        assert_eq!(
            token(json!({"token_type": "access"})).verify(&s, now, Some(TokenType::Access)),
            Err(TokenError::MissingClaim("exp".into()))
        );
        assert_eq!(
            token(json!({"exp": 2_000})).verify(&s, now, Some(TokenType::Access)),
            Err(TokenError::NoId)
        );
        assert_eq!(
            token(json!({"exp": 2_000, "jti": "x"})).verify(&s, now, Some(TokenType::Access)),
            Err(TokenError::NoType)
        );
        assert_eq!(
            token(json!({"exp": 2_000, "jti": "x", "token_type": "refresh"})).verify(
                &s,
                now,
                Some(TokenType::Access)
            ),
            Err(TokenError::WrongType)
        );
        assert_eq!(
            token(json!({"exp": 2_000, "jti": "x", "token_type": "refresh"})).verify(&s, now, None),
            Ok(())
        );
        assert_eq!(
            token(json!({"refresh_exp": 1_000})).check_exp("refresh_exp", now, 0),
            Err(TokenError::ClaimExpired("refresh_exp".into()))
        );
    }
}
