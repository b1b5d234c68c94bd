//! EMQX 5.x and 6.x read an `EMQX_*` environment variable as a HOCON value,
//! not as a raw string: `EMQX_API_KEY__BOOTSTRAP_FILE="\"/opt/emqx/data/x\""`
//! (what the Go operator writes) and `…=/opt/emqx/data/x` are the same path.
//!
//! The rule, from hocon 0.45.5 (the tag EMQX e6.0.1's `mix.exs` pins):
//! `hocon_tconf:parse_env/3` parses `"fake_key=" ++ Value` as a HOCON
//! document and takes `fake_key`'s value; when that fails (the scanner
//! meets a character no token starts with, such as the `/` of an unquoted
//! path) the raw text is used as is, and an empty value stays empty. The
//! field's type then converts the value (`hocon_schema_builtin:convert/2`):
//! an integer becomes its decimal text for a string field, a string becomes
//! an enum symbol, anything else must already be of the field's type.
//! Tokens are those of `src/hocon_scanner.xrl` at that tag: whitespace and
//! `#`/`//` comments are skipped; quoted and triple-quoted strings;
//! unquoted strings `[A-Za-z][A-Za-z0-9_.@%|-]*`; `true`/`false`/`null`;
//! integers and floats; `10s`, `5MB`, `50%` (durations, byte sizes and
//! percentages, which the scanner keeps as strings).
//!
//! Only what the simulator reads goes through here: `api_key.bootstrap_file`
//! and `cluster.dns.name` (strings) and `node.role` (an enum). The node name,
//! its host and the cookie are read by the container's shell scripts
//! (`deploy/docker/docker-entrypoint.sh`, `bin/emqx` at e6.0.1), which take
//! the raw text, so they do not come here; nor does any 4.4 variable (4.4 is
//! not configured through HOCON). A value of several tokens (a HOCON
//! concatenation, object or array) is refused with a clear error rather
//! than guessed at: none of the fields read here takes one.

use crate::config::ConfigError;

/// An environment value as HOCON reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvValue {
    /// A quoted or unquoted string, a duration, byte size or percentage —
    /// or the raw text when it is not HOCON at all.
    Str(String),
    /// An integer, with its text.
    Integer(String),
    /// `null`: the field is left at its default.
    Null,
    /// A float, a boolean, or several tokens (a concatenation, an object,
    /// an array): described for the error message.
    Other(&'static str),
}

/// Reads `raw` as `hocon_tconf:parse_env/3` does.
pub fn parse(raw: &str) -> EnvValue {
    if raw.is_empty() {
        return EnvValue::Str(String::new());
    }
    match tokens(raw) {
        // Not HOCON (or nothing but blanks and comments, which is a syntax
        // error after `fake_key=`): EMQX uses the raw text.
        None => EnvValue::Str(raw.to_owned()),
        Some(tokens) if tokens.is_empty() => EnvValue::Str(raw.to_owned()),
        Some(mut tokens) if tokens.len() == 1 => tokens.remove(0),
        Some(_) => EnvValue::Other("a HOCON concatenation, object or array"),
    }
}

/// A string field (`binary()`, `string()`): `None` when unset or `null`.
pub fn string_field(name: &str, raw: Option<&String>) -> Result<Option<String>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    match parse(raw) {
        EnvValue::Str(s) | EnvValue::Integer(s) => Ok(Some(s)),
        EnvValue::Null => Ok(None),
        EnvValue::Other(what) => Err(not_of_type(name, raw, what, "a string")),
    }
}

/// An enum field: the symbol, which must be one of `symbols`; `None` when
/// unset or `null`.
pub fn enum_field(
    name: &str,
    raw: Option<&String>,
    symbols: &[&str],
) -> Result<Option<String>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let symbol = match parse(raw) {
        EnvValue::Str(s) => s,
        EnvValue::Null => return Ok(None),
        EnvValue::Integer(_) => return Err(not_of_type(name, raw, "an integer", "a symbol")),
        EnvValue::Other(what) => return Err(not_of_type(name, raw, what, "a symbol")),
    };
    if symbols.contains(&symbol.as_str()) {
        Ok(Some(symbol))
    } else {
        Err(ConfigError::Env {
            name: name.into(),
            message: format!("`{symbol}` is not one of {}", symbols.join(", ")),
        })
    }
}

fn not_of_type(name: &str, raw: &str, what: &str, wanted: &str) -> ConfigError {
    ConfigError::Env {
        name: name.into(),
        message: format!("`{raw}` is {what} in HOCON, not {wanted}"),
    }
}

/// The value's tokens, or `None` when the scanner fails.
fn tokens(raw: &str) -> Option<Vec<EnvValue>> {
    let chars: Vec<char> = raw.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let rest = &chars[i..];
        if is_blank(c) {
            i += 1;
        } else if c == '#' || rest.starts_with(&['/', '/']) {
            while i < chars.len() && !is_line_feed(chars[i]) {
                i += 1;
            }
        } else if "{}[],:=".contains(c) || rest.starts_with(&['$', '{']) {
            out.push(EnvValue::Other("a HOCON concatenation, object or array"));
            i += 1;
        } else if rest.starts_with(&['"', '"', '"']) {
            let (value, len) = triple_quoted(rest)?;
            out.push(value);
            i += len;
        } else if c == '"' {
            let (text, len) = quoted(rest)?;
            out.push(EnvValue::Str(text));
            i += len;
        } else if c.is_ascii_alphabetic() {
            let len = 1 + rest[1..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || "_.@%-|".contains(**c))
                .count();
            let word: String = rest[..len].iter().collect();
            // Longest match; on a tie the earlier rule (Bool, Null) wins.
            out.push(match word.as_str() {
                "true" | "false" => EnvValue::Other("a boolean"),
                "null" => EnvValue::Null,
                _ => EnvValue::Str(word),
            });
            i += len;
        } else if c.is_ascii_digit() || "+-.".contains(c) {
            let (token, len) = number_like(rest)?;
            out.push(token);
            i += len;
        } else {
            return None;
        }
    }
    Some(out)
}

fn is_line_feed(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\u{0B}' | '\u{0C}' | ' ' | '\u{A0}') || is_line_feed(c)
}

/// `"…"`: the scanner's `"{Char}*"` where a `Char` is any character but a
/// quote or line feed, or a backslash escape (`\"` among them). Matched
/// longest, so the token ends at the last quote of the line that every
/// quote before it (each escaped) allows. Unescaped as `unesc/1` does:
/// `\\ \" \n \t \r \b \f`; any other backslash (`\u0041` too) is kept.
fn quoted(rest: &[char]) -> Option<(String, usize)> {
    let mut end = None;
    for (i, c) in rest.iter().enumerate().skip(1) {
        if is_line_feed(*c) {
            break;
        }
        if *c == '"' {
            end = Some(i);
            if rest[i - 1] != '\\' {
                break;
            }
        }
    }
    let end = end?;
    let mut text = String::new();
    let mut body = rest[1..end].iter().peekable();
    while let Some(c) = body.next() {
        let escaped = match (c, body.peek()) {
            ('\\', Some('\\')) => '\\',
            ('\\', Some('"')) => '"',
            ('\\', Some('n')) => '\n',
            ('\\', Some('t')) => '\t',
            ('\\', Some('r')) => '\r',
            ('\\', Some('b')) => '\u{8}',
            ('\\', Some('f')) => '\u{c}',
            (c, _) => {
                text.push(*c);
                continue;
            }
        };
        body.next();
        text.push(escaped);
    }
    Some((text, end + 1))
}

/// `"""…"""`, taken verbatim; the `~` form that EMQX unindents is not
/// modelled (refused).
fn triple_quoted(rest: &[char]) -> Option<(EnvValue, usize)> {
    let body = &rest[3..];
    let end = body.windows(3).position(|w| w == ['"', '"', '"'])?;
    let value = if body.first() == Some(&'~') {
        EnvValue::Other("an unindented triple-quoted string")
    } else {
        EnvValue::Str(body[..end].iter().collect())
    };
    Some((value, end + 6))
}

/// An integer, a float, or a digits-and-unit string (`10s`, `5MB`, `50%`):
/// the longest of them, as the scanner takes it.
fn number_like(rest: &[char]) -> Option<(EnvValue, usize)> {
    let digits = |from: usize| {
        rest.get(from..)
            .map_or(0, |r| r.iter().take_while(|c| c.is_ascii_digit()).count())
    };
    let sign = usize::from(matches!(rest[0], '+' | '-'));
    let whole = digits(sign);
    let mut len = sign + whole;
    let mut float = false;
    if rest.get(len) == Some(&'.') && digits(len + 1) > 0 {
        len += 1 + digits(len + 1);
        float = true;
        if matches!(rest.get(len), Some('e' | 'E')) {
            let exp_sign = usize::from(matches!(rest.get(len + 1), Some('+' | '-')));
            let exp = digits(len + 1 + exp_sign);
            if exp > 0 {
                len += 1 + exp_sign + exp;
            }
        }
    }
    if whole == 0 && !float {
        return None;
    }
    if !float && sign == 0 {
        // Unit suffixes only follow bare digits; the longest one wins.
        let text: String = rest.iter().collect();
        let units = ["ms", "MS", "kb", "KB", "mb", "MB", "gb", "GB"];
        let unit_len = units
            .iter()
            .find(|u| text[whole..].starts_with(*u))
            .map(|u| u.len())
            .or_else(|| {
                text[whole..]
                    .starts_with(['d', 'D', 'h', 'H', 'm', 'M', 's', 'S', '%'])
                    .then_some(1)
            });
        if let Some(unit) = unit_len {
            let len = whole + unit;
            return Some((EnvValue::Str(rest[..len].iter().collect()), len));
        }
    }
    let text: String = rest[..len].iter().collect();
    Some(if float {
        (EnvValue::Other("a float"), len)
    } else {
        (
            EnvValue::Integer(text.trim_start_matches('+').to_owned()),
            len,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> EnvValue {
        EnvValue::Str(text.into())
    }

    #[test]
    fn quoted_and_unquoted_paths_are_the_same_path() {
        // What the Go operator 2.2.29 writes, and what a user writes.
        assert_eq!(
            parse("\"/opt/emqx/data/bootstrap_api_key\""),
            s("/opt/emqx/data/bootstrap_api_key")
        );
        assert_eq!(
            parse("/opt/emqx/data/bootstrap_api_key"),
            s("/opt/emqx/data/bootstrap_api_key")
        );
        // `//` starts a comment, so a path like this is no HOCON value:
        // `fake_key=` alone is a syntax error and the raw text is used.
        assert_eq!(parse("//opt/x"), s("//opt/x"));
    }

    #[test]
    fn scalars_read_as_the_scanner_reads_them() {
        assert_eq!(parse("core"), s("core"));
        assert_eq!(parse("\"core\""), s("core"));
        assert_eq!(
            parse("  core  # a comment"),
            s("core"),
            "blanks and comments skipped"
        );
        assert_eq!(
            parse("probe-headless.default.svc.cluster.local"),
            s("probe-headless.default.svc.cluster.local")
        );
        assert_eq!(parse("emqx@10.0.0.1"), s("emqx@10.0.0.1"));
        assert_eq!(parse("18083"), EnvValue::Integer("18083".into()));
        assert_eq!(parse("+5"), EnvValue::Integer("5".into()));
        assert_eq!(parse("30s"), s("30s"), "a duration stays a string");
        assert_eq!(parse("100ms"), s("100ms"));
        assert_eq!(parse("5MB"), s("5MB"));
        assert_eq!(parse("80%"), s("80%"));
        assert_eq!(parse("1.5"), EnvValue::Other("a float"));
        assert_eq!(parse("true"), EnvValue::Other("a boolean"));
        assert_eq!(parse("trueish"), s("trueish"), "longest match: unquoted");
        assert_eq!(parse("null"), EnvValue::Null);
        assert_eq!(
            parse("\"a\\\"b\\u0041\\n\""),
            s("a\"b\\u0041\n"),
            "\\u is kept"
        );
        assert_eq!(
            parse("\"a\\q\""),
            s("a\\q"),
            "an unknown escape keeps its backslash"
        );
        assert_eq!(parse("\"a\\\""), s("a\\"), "the last quote ends the string");
        assert_eq!(parse("\"\"\"raw \\n\"\"\""), s("raw \\n"));
        assert_eq!(parse(""), s(""));
    }

    #[test]
    fn what_is_not_hocon_is_the_raw_text() {
        for raw in [
            "/data",
            "a/b",
            " ",
            "# only a comment",
            "\"unterminated",
            "é",
        ] {
            assert_eq!(parse(raw), s(raw), "{raw:?}");
        }
    }

    #[test]
    fn several_tokens_are_refused_not_guessed() {
        for raw in ["a b", "{a: b}", "[a, b]", "${HOME}", "\"a\" \"b\""] {
            assert!(matches!(parse(raw), EnvValue::Other(_)), "{raw:?}");
        }
    }

    #[test]
    fn fields_convert_by_their_type() {
        let v = |t: &str| Some(t.to_owned());
        assert_eq!(
            string_field("F", v("\"/p\"").as_ref()),
            Ok(Some("/p".into()))
        );
        assert_eq!(string_field("F", v("12").as_ref()), Ok(Some("12".into())));
        assert_eq!(string_field("F", v("null").as_ref()), Ok(None));
        assert_eq!(string_field("F", None), Ok(None));
        let e = string_field("F", v("{a: b}").as_ref()).expect_err("object");
        assert!(e.to_string().starts_with("env F: "), "{e}");
        let e = string_field("F", v("true").as_ref()).expect_err("boolean");
        assert!(e.to_string().contains("boolean"), "{e}");

        let roles = ["core", "replicant"];
        assert_eq!(
            enum_field("R", v("\"replicant\"").as_ref(), &roles),
            Ok(Some("replicant".into()))
        );
        assert_eq!(
            enum_field("R", v(" core ").as_ref(), &roles),
            Ok(Some("core".into()))
        );
        let e = enum_field("R", v("\"boss\"").as_ref(), &roles).expect_err("unknown symbol");
        assert!(
            e.to_string()
                .contains("`boss` is not one of core, replicant"),
            "{e}"
        );
        assert!(enum_field("R", v("1").as_ref(), &roles).is_err());
    }
}
