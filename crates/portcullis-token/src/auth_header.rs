//! Parsing the `Authorization` header the way simplejwt's `JWTAuthentication`
//! does (`get_raw_token`): split on ASCII whitespace with runs collapsed; an
//! unknown scheme is "no credentials", not an error; a known scheme with
//! anything but exactly one token after it is `bad_authorization_header`.

/// What an authentication header holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthHeader<'a> {
    /// Absent, blank, or a scheme not in `AUTH_HEADER_TYPES`: anonymous.
    Anonymous,
    /// A recognised scheme followed by exactly one token.
    Token(&'a [u8]),
    /// A recognised scheme with zero or several values after it.
    Malformed,
}

/// Parse a raw header value against the accepted schemes (case-sensitive,
/// exact bytes, as simplejwt compares them).
#[must_use]
pub fn parse_authorization<'a, S: AsRef<str>>(
    value: Option<&'a [u8]>,
    header_types: &[S],
) -> AuthHeader<'a> {
    let Some(value) = value else {
        return AuthHeader::Anonymous;
    };
    // The usual `<scheme> <token>`: one space, and no byte at or below the
    // space elsewhere (every separator is one), so the split below would
    // find exactly these two parts. Checked without stopping early, which
    // the compiler turns into a few wide compares, instead of splitting a
    // 250-byte token byte by byte (docs/architecture.md, "Fast paths").
    if let Some(space) = value.iter().position(|b| *b == b' ')
        && let (scheme, [_, token @ ..]) = value.split_at(space)
        && !scheme.is_empty()
        && !token.is_empty()
        && !has_space_or_control(scheme)
        && !has_space_or_control(token)
    {
        return if header_types.iter().any(|t| t.as_ref().as_bytes() == scheme) {
            AuthHeader::Token(token)
        } else {
            AuthHeader::Anonymous
        };
    }
    split(value, header_types)
}

/// The general case: Python's `bytes.split()`, where any run of ASCII
/// whitespace separates.
fn split<'a, S: AsRef<str>>(value: &'a [u8], header_types: &[S]) -> AuthHeader<'a> {
    let mut parts = value
        .split(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .filter(|part| !part.is_empty());
    let Some(scheme) = parts.next() else {
        return AuthHeader::Anonymous;
    };
    if !header_types.iter().any(|t| t.as_ref().as_bytes() == scheme) {
        return AuthHeader::Anonymous;
    }
    match (parts.next(), parts.next()) {
        (Some(token), None) => AuthHeader::Token(token),
        _ => AuthHeader::Malformed,
    }
}

/// Whether any byte is a space or below it (every ASCII whitespace byte is).
fn has_space_or_control(bytes: &[u8]) -> bool {
    // A bitwise or, not `any`: no early exit, so the loop is vectorized.
    bytes
        .iter()
        .fold(0_u8, |found, b| found | u8::from(*b <= b' '))
        != 0
}

/// `AUTH_HEADER_NAME` as an HTTP header name, lowercase: Django's
/// `HTTP_X_ACCESS_TOKEN` form becomes `x-access-token`; a plain name
/// (`Authorization`) is kept. Validity is the HTTP library's to check.
#[must_use]
pub fn auth_header_name(setting: &str) -> String {
    let raw = setting.trim();
    raw.strip_prefix("HTTP_")
        .map_or_else(|| raw.to_owned(), |rest| rest.replace('_', "-"))
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEARER: &[&str] = &["Bearer"];

    #[test]
    fn header_names_in_django_or_http_form() {
        assert_eq!(auth_header_name("HTTP_AUTHORIZATION"), "authorization");
        assert_eq!(auth_header_name(" HTTP_X_ACCESS_TOKEN "), "x-access-token");
        assert_eq!(auth_header_name("X-Token"), "x-token");
    }

    #[test]
    fn follows_simplejwt_split_rules() {
        assert_eq!(parse_authorization(None, BEARER), AuthHeader::Anonymous);
        assert_eq!(
            parse_authorization(Some(b""), BEARER),
            AuthHeader::Anonymous
        );
        assert_eq!(
            parse_authorization(Some(b"   "), BEARER),
            AuthHeader::Anonymous
        );
        assert_eq!(
            parse_authorization(Some(b"bearer x"), BEARER),
            AuthHeader::Anonymous
        );
        assert_eq!(
            parse_authorization(Some(b"JWT x"), BEARER),
            AuthHeader::Anonymous
        );
        assert_eq!(
            parse_authorization(Some(b"JWT a b"), BEARER),
            AuthHeader::Anonymous
        );
        assert_eq!(
            parse_authorization(Some(b"Bearer"), BEARER),
            AuthHeader::Malformed
        );
        assert_eq!(
            parse_authorization(Some(b"Bearer a b"), BEARER),
            AuthHeader::Malformed
        );
        assert_eq!(
            parse_authorization(Some(b"  Bearer \t  tok   "), BEARER),
            AuthHeader::Token(b"tok")
        );
        assert_eq!(
            parse_authorization(Some(b"JWT tok"), &["Bearer", "JWT"]),
            AuthHeader::Token(b"tok")
        );
        assert_eq!(
            parse_authorization(Some(b"Bearer a\x01b"), BEARER),
            AuthHeader::Token(b"a\x01b")
        );
    }

    /// The `<scheme> <token>` shortcut answers as the general split does,
    /// for every value of up to six bytes from separators, other control
    /// bytes, scheme letters and token bytes.
    #[test]
    fn the_shortcut_agrees_with_the_split() {
        const BYTES: &[u8] = b" \t\n\x0b\x01XJWTa.";
        let types = ["JWT", "X"];
        let mut value = Vec::new();
        let mut counters = [0_usize; 6];
        for len in 0..=counters.len() {
            counters = [0; 6];
            loop {
                value.clear();
                value.extend(counters.iter().take(len).map(|&i| BYTES[i]));
                assert_eq!(
                    parse_authorization(Some(&value), &types),
                    split(&value, &types),
                    "{value:?}"
                );
                // The next value of this length, as an odometer.
                let Some(digit) = counters.iter().take(len).position(|&i| i + 1 < BYTES.len())
                else {
                    break;
                };
                counters[digit] += 1;
                counters[..digit].fill(0);
            }
        }
    }
}
