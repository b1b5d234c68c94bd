//! Reads one value out of EMQX's HOCON configuration (`spec.config.data`,
//! `emqx.conf`): enough of HOCON to find `node.cookie` the way EMQX and the
//! Go operator (go-hocon) do, and to say so when the text uses something
//! this reader does not follow instead of guessing.
//!
//! Followed: `#` and `//` comments; an optional root `{}`; keys bare,
//! quoted and dotted (`node.cookie`, `node { cookie … }`); `=`, `:` or
//! nothing before `{`; fields separated by newlines or commas; quoted,
//! triple-quoted and unquoted strings; nested objects merged, a later value
//! for the same key winning (HOCON's duplicate-key rule). Arrays and numbers
//! are read and kept as opaque values. Not followed, reported as
//! [`HoconError`]: `include`, `+=`, and a substitution (`${…}`) or a
//! concatenation at the path asked for.

use std::collections::BTreeMap;

/// Why a value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct HoconError {
    /// 1-based line of the problem.
    pub line: usize,
    /// What is wrong or not followed.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Object(BTreeMap<String, Value>),
    Text(String),
    /// An array, a substitution or a concatenation: present, not a string.
    Opaque(&'static str),
}

/// The string at `path` (dot-separated, e.g. `node.cookie`); `None` when the
/// document does not set it.
pub fn lookup_string(text: &str, path: &str) -> Result<Option<String>, HoconError> {
    let root = Parser::new(text).document()?;
    let mut at = &root;
    for segment in path.split('.') {
        match at {
            Value::Object(fields) => match fields.get(segment) {
                Some(v) => at = v,
                None => return Ok(None),
            },
            _ => return Ok(None),
        }
    }
    match at {
        Value::Text(s) => Ok(Some(s.clone())),
        Value::Object(_) => Err(HoconError {
            line: 0,
            message: format!("{path} is an object, not a string"),
        }),
        Value::Opaque(what) => Err(HoconError {
            line: 0,
            message: format!("{path} is {what}, which this reader does not resolve"),
        }),
    }
}

/// Nesting deeper than this is refused: a hostile document must not
/// exhaust the stack.
const MAX_DEPTH: usize = 64;

struct Parser {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

impl Parser {
    fn new(text: &str) -> Parser {
        Parser {
            chars: text.chars().collect(),
            pos: 0,
            line: 1,
        }
    }

    fn error(&self, message: impl Into<String>) -> HoconError {
        HoconError {
            line: self.line,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn starts_with(&self, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(i, c)| self.peek_at(i) == Some(c))
    }

    fn skip_comment(&mut self) -> bool {
        if self.peek() == Some('#') || self.starts_with("//") {
            while let Some(c) = self.peek() {
                if c == '\n' {
                    break;
                }
                self.bump();
            }
            true
        } else {
            false
        }
    }

    /// Skips spaces and comments; with `newlines`, line breaks too.
    fn skip_blank(&mut self, newlines: bool) {
        loop {
            match self.peek() {
                Some('\n') if newlines => {
                    self.bump();
                }
                Some(c) if c != '\n' && c.is_whitespace() => {
                    self.bump();
                }
                Some('\u{feff}') => {
                    self.bump();
                }
                _ => {
                    if !self.skip_comment() {
                        return;
                    }
                }
            }
        }
    }

    fn document(&mut self) -> Result<Value, HoconError> {
        self.skip_blank(true);
        let root = if self.peek() == Some('{') {
            self.bump();
            let fields = self.fields(Some('}'), 1)?;
            self.skip_blank(true);
            fields
        } else {
            self.fields(None, 1)?
        };
        if self.peek().is_some() {
            return Err(self.error("unexpected text after the document"));
        }
        Ok(Value::Object(root))
    }

    /// Fields up to `close` (or the end of the text at the root).
    fn fields(
        &mut self,
        close: Option<char>,
        depth: usize,
    ) -> Result<BTreeMap<String, Value>, HoconError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH}")));
        }
        let mut fields = BTreeMap::new();
        loop {
            self.skip_blank(true);
            match (self.peek(), close) {
                (None, None) => return Ok(fields),
                (None, Some(c)) => return Err(self.error(format!("missing `{c}`"))),
                (Some(c), Some(end)) if c == end => {
                    self.bump();
                    return Ok(fields);
                }
                (Some(','), _) => {
                    self.bump();
                    continue;
                }
                _ => {}
            }
            if self.starts_with("include") && self.peek_at(7).is_some_and(char::is_whitespace) {
                return Err(self.error("`include` is not followed"));
            }
            let path = self.key_path()?;
            self.skip_blank(false);
            let value = match self.peek() {
                Some('{') => {
                    self.bump();
                    Value::Object(self.fields(Some('}'), depth + 1)?)
                }
                Some('=') | Some(':') => {
                    self.bump();
                    self.skip_blank(false);
                    self.value(depth)?
                }
                Some('+') if self.peek_at(1) == Some('=') => {
                    return Err(self.error("`+=` is not followed"));
                }
                _ => {
                    return Err(self.error(format!(
                        "expected `=`, `:` or `{{` after `{}`",
                        path.join(".")
                    )));
                }
            };
            insert(&mut fields, &path, value);
            self.skip_blank(false);
            match self.peek() {
                Some('\n') | Some(',') | None => {}
                Some(c) if Some(c) == close => {}
                Some(c) => return Err(self.error(format!("unexpected `{c}` after a value"))),
            }
        }
    }

    fn key_path(&mut self) -> Result<Vec<String>, HoconError> {
        let mut path = Vec::new();
        loop {
            let segment = if self.peek() == Some('"') {
                self.quoted()?
            } else {
                let mut s = String::new();
                while let Some(c) = self.peek() {
                    if c.is_whitespace() || ".=:{}[],#\"+$".contains(c) || self.starts_with("//") {
                        break;
                    }
                    s.push(c);
                    self.bump();
                }
                if s.is_empty() {
                    return Err(self.error("expected a key"));
                }
                s
            };
            path.push(segment);
            if self.peek() == Some('.') {
                self.bump();
            } else {
                return Ok(path);
            }
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, HoconError> {
        let first = match self.peek() {
            Some('{') => {
                self.bump();
                return Ok(Value::Object(self.fields(Some('}'), depth + 1)?));
            }
            Some('[') => {
                self.skip_array(depth + 1)?;
                Value::Opaque("an array")
            }
            Some('"') if self.starts_with("\"\"\"") => Value::Text(self.triple_quoted()?),
            Some('"') => Value::Text(self.quoted()?),
            Some('$') if self.peek_at(1) == Some('{') => {
                self.skip_until('}')?;
                Value::Opaque("a substitution")
            }
            Some(_) => {
                let s = self.unquoted();
                if s.is_empty() {
                    return Err(self.error("expected a value"));
                }
                Value::Text(s)
            }
            None => return Err(self.error("expected a value")),
        };
        // Anything else on the line before the separator is concatenation.
        self.skip_blank(false);
        match self.peek() {
            None | Some('\n') | Some(',') | Some('}') | Some(']') => Ok(first),
            Some(_) => {
                while !matches!(self.peek(), None | Some('\n') | Some(',') | Some('}')) {
                    if self.peek() == Some('"') {
                        self.quoted()?;
                    } else {
                        self.bump();
                    }
                }
                Ok(Value::Opaque("a concatenation"))
            }
        }
    }

    fn unquoted(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c == '\n'
                || "{}[],#\"".contains(c)
                || self.starts_with("//")
                || self.starts_with("${")
            {
                break;
            }
            s.push(c);
            self.bump();
        }
        s.trim_end().to_string()
    }

    fn quoted(&mut self) -> Result<String, HoconError> {
        self.bump();
        let mut s = String::new();
        loop {
            match self.bump() {
                None | Some('\n') => return Err(self.error("unterminated string")),
                Some('"') => return Ok(s),
                Some('\\') => {
                    let c = match self.bump() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('b') => '\u{8}',
                        Some('f') => '\u{c}',
                        Some(c @ ('"' | '\\' | '/')) => c,
                        Some('u') => {
                            let hex: String = (0..4).filter_map(|_| self.bump()).collect();
                            u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.error("bad \\u escape"))?
                        }
                        _ => return Err(self.error("bad escape in a string")),
                    };
                    s.push(c);
                }
                Some(c) => s.push(c),
            }
        }
    }

    fn triple_quoted(&mut self) -> Result<String, HoconError> {
        for _ in 0..3 {
            self.bump();
        }
        let mut s = String::new();
        loop {
            if self.starts_with("\"\"\"") {
                // Extra quotes before the closing three belong to the string.
                while self.peek_at(3) == Some('"') {
                    s.push('"');
                    self.bump();
                }
                for _ in 0..3 {
                    self.bump();
                }
                return Ok(s);
            }
            match self.bump() {
                Some(c) => s.push(c),
                None => return Err(self.error("unterminated \"\"\" string")),
            }
        }
    }

    fn skip_until(&mut self, end: char) -> Result<(), HoconError> {
        while let Some(c) = self.bump() {
            if c == end {
                return Ok(());
            }
        }
        Err(self.error(format!("missing `{end}`")))
    }

    fn skip_array(&mut self, depth: usize) -> Result<(), HoconError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nested deeper than {MAX_DEPTH}")));
        }
        self.bump();
        loop {
            self.skip_blank(true);
            match self.peek() {
                None => return Err(self.error("missing `]`")),
                Some(']') => {
                    self.bump();
                    return Ok(());
                }
                Some(',') => {
                    self.bump();
                }
                Some('[') => self.skip_array(depth + 1)?,
                Some('{') => {
                    self.bump();
                    self.fields(Some('}'), depth + 1)?;
                }
                Some('"') if self.starts_with("\"\"\"") => {
                    self.triple_quoted()?;
                }
                Some('"') => {
                    self.quoted()?;
                }
                Some(_) => {
                    if self.unquoted().is_empty() && self.peek().is_some() {
                        // `${`…`}` or a stray character.
                        self.bump();
                    }
                }
            }
        }
    }
}

/// Sets `path` in `fields`; objects met on the way merge, anything else is
/// replaced (HOCON: a later non-object value wins).
fn insert(fields: &mut BTreeMap<String, Value>, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        match (fields.get_mut(first), value) {
            (Some(Value::Object(old)), Value::Object(new)) => {
                for (k, v) in new {
                    insert(old, std::slice::from_ref(&k), v);
                }
            }
            (_, value) => {
                fields.insert(first.clone(), value);
            }
        }
        return;
    }
    let entry = fields
        .entry(first.clone())
        .or_insert_with(|| Value::Object(BTreeMap::new()));
    if !matches!(entry, Value::Object(_)) {
        *entry = Value::Object(BTreeMap::new());
    }
    if let Value::Object(inner) = entry {
        insert(inner, rest, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie(text: &str) -> Result<Option<String>, HoconError> {
        lookup_string(text, "node.cookie")
    }

    #[test]
    fn finds_a_value_in_every_spelling() {
        for text in [
            "node.cookie = \"c1\"",
            "node.cookie: c1",
            "node { cookie = c1 }",
            "node {\n  name = \"emqx@127.0.0.1\"\n  cookie = \"c1\" # the cookie\n}",
            "{ node { cookie: \"c1\" } }",
            "\"node\".\"cookie\" = c1",
            "node { cookie = \"\"\"c1\"\"\" }",
            "// first\nnode.cookie = other\nnode { cookie = c1 }",
            "node { cookie = other }\nnode.cookie = c1",
            "node { cookie = other, data_dir = data }\nnode { cookie = c1 }",
            "dashboard { listeners.http.bind = 18083 }, node.cookie = c1",
            "log.console { level = warning }\nlisteners.tcp.default { bind = \"0.0.0.0:1883\" }\nnode.cookie = c1\nauthz.sources = [{ type = file }]",
        ] {
            assert_eq!(cookie(text), Ok(Some("c1".into())), "{text:?}");
        }
    }

    #[test]
    fn absent_and_escaped_values() {
        assert_eq!(cookie(""), Ok(None));
        assert_eq!(cookie("node { name = \"a@b\" }"), Ok(None));
        assert_eq!(cookie("nodes.cookie = x"), Ok(None));
        assert_eq!(
            cookie("node.cookie = \"a\\\"b\\u0041\""),
            Ok(Some("a\"bA".into()))
        );
        assert_eq!(
            cookie("node.cookie = a b c  # note"),
            Ok(Some("a b c".into()))
        );
        // `#` inside quotes is text.
        assert_eq!(cookie("node.cookie = \"a#b\""), Ok(Some("a#b".into())));
    }

    #[test]
    fn what_it_does_not_follow_is_an_error_not_a_guess() {
        for text in [
            "node.cookie = ${COOKIE}",
            "node.cookie = \"a\" \"b\"",
            "node.cookie = [a]",
            "node { cookie { x = 1 } }",
        ] {
            assert!(cookie(text).is_err(), "{text:?}");
        }
        for text in [
            "include \"other.conf\"\nnode.cookie = a",
            "node.cookie += a",
            "node { cookie = a",
            "node.cookie = \"a",
            "node.cookie",
            "= a",
            "node { } }",
        ] {
            let e = cookie(text).expect_err(text);
            assert!(e.line >= 1, "{text:?}: {e}");
        }
    }

    #[test]
    fn hostile_input_is_refused_not_a_crash() {
        let deep = "a {".repeat(10_000);
        assert!(cookie(&deep).is_err());
        let deep_array = format!("a = {}", "[".repeat(10_000));
        assert!(cookie(&deep_array).is_err());
        assert!(cookie("\u{0}\u{ffff}\"\\").is_err());
        assert!(cookie("node.cookie = \"\\u12\"").is_err());
    }
}
