//! Just enough HOCON to find one setting in `emqx.conf`: the document is
//! flattened into `(dotted.path, value)` assignments in the order written,
//! so the last assignment of a path is the one EMQX uses (HOCON merges
//! objects and lets a later value win). Objects (`a { b = 1 }`,
//! `a = { b = 1 }`, `a.b = 1`, `a: {…}`), quoted and triple-quoted strings,
//! unquoted values, arrays (kept as raw text), `#` and `//` comments and
//! `include` lines (skipped: the simulator mounts no included files) are
//! read. Substitutions (`${…}`) are kept as written.
//!
//! A document this reader cannot follow is an error naming the line: the
//! node then refuses to boot, as EMQX does with a config it cannot parse,
//! rather than silently running without a setting the user wrote.
//!
//! The operator's own reader is `emqx_crd::hocon`; this one is kept apart on
//! purpose: the simulator is the oracle of the operator's tests and shares
//! no parsing code with it, so a bug in one shows up against the other.

/// Objects nested deeper than this are refused: the reader recurses per
/// level, and a hostile document must not exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// One `path = value` of the document; strings are unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Dotted path from the root, e.g. `license.key`.
    pub path: String,
    /// The value as text (a string's content; an array's raw text).
    pub value: String,
}

/// The last value assigned to `path`, if any.
pub fn lookup(text: &str, path: &str) -> Result<Option<String>, String> {
    Ok(flatten(text)?
        .into_iter()
        .rev()
        .find(|a| a.path == path)
        .map(|a| a.value))
}

/// Every scalar assignment of the document, in order.
pub fn flatten(text: &str) -> Result<Vec<Assignment>, String> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        at: 0,
        out: Vec::new(),
        depth: 0,
    };
    // A document may be wrapped in one pair of braces.
    parser.skip_separators();
    if matches!(parser.peek(), Some((Token::Open, _))) {
        parser.at += 1;
        parser.object(&[], true)?;
        parser.skip_separators();
        if let Some((_, line)) = parser.peek() {
            return Err(format!("line {line}: text after the closing brace"));
        }
    } else {
        parser.object(&[], false)?;
    }
    Ok(parser.out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    OpenArray,
    CloseArray,
    Assign,
    Comma,
    Newline,
    /// Unquoted text (a key, or part of a value).
    Word(String),
    /// A quoted string's content.
    Quoted(String),
    /// Spaces between two value parts (HOCON concatenates them).
    Space,
}

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\n' => {
                tokens.push((Token::Newline, line));
                line += 1;
                i += 1;
            }
            ' ' | '\t' | '\r' | '\u{feff}' => {
                while i < chars.len() && matches!(chars[i], ' ' | '\t' | '\r' | '\u{feff}') {
                    i += 1;
                }
                tokens.push((Token::Space, line));
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '{' => {
                tokens.push((Token::Open, line));
                i += 1;
            }
            '}' => {
                tokens.push((Token::Close, line));
                i += 1;
            }
            '[' => {
                tokens.push((Token::OpenArray, line));
                i += 1;
            }
            ']' => {
                tokens.push((Token::CloseArray, line));
                i += 1;
            }
            '=' | ':' => {
                tokens.push((Token::Assign, line));
                i += 1;
            }
            '+' if next == Some('=') => {
                return Err(format!("line {line}: `+=` is not supported"));
            }
            ',' => {
                tokens.push((Token::Comma, line));
                i += 1;
            }
            '"' if chars.get(i + 1) == Some(&'"') && chars.get(i + 2) == Some(&'"') => {
                let start = line;
                i += 3;
                let mut s = String::new();
                loop {
                    if i >= chars.len() {
                        return Err(format!("line {start}: unterminated \"\"\" string"));
                    }
                    if chars[i] == '"'
                        && chars.get(i + 1) == Some(&'"')
                        && chars.get(i + 2) == Some(&'"')
                    {
                        i += 3;
                        break;
                    }
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    s.push(chars[i]);
                    i += 1;
                }
                tokens.push((Token::Quoted(s), start));
            }
            '"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    match chars.get(i) {
                        None | Some('\n') => {
                            return Err(format!("line {line}: unterminated string"));
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let escaped = match chars.get(i + 1) {
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some('r') => '\r',
                                Some(c @ ('"' | '\\' | '/')) => *c,
                                other => {
                                    return Err(format!(
                                        "line {line}: bad escape `\\{}` in a string",
                                        other.map(char::to_string).unwrap_or_default()
                                    ));
                                }
                            };
                            s.push(escaped);
                            i += 2;
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                tokens.push((Token::Quoted(s), line));
            }
            _ => {
                let mut s = String::new();
                while i < chars.len() {
                    let c = chars[i];
                    let comment = c == '#' || (c == '/' && chars.get(i + 1) == Some(&'/'));
                    if comment
                        || c.is_whitespace()
                        || matches!(c, '{' | '}' | '[' | ']' | '=' | ':' | ',' | '"')
                        || (c == '+' && chars.get(i + 1) == Some(&'='))
                    {
                        break;
                    }
                    s.push(c);
                    i += 1;
                }
                tokens.push((Token::Word(s), line));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    at: usize,
    out: Vec<Assignment>,
    depth: usize,
}

impl Parser {
    /// The next token, owned: the parser moves on while it reads it.
    fn peek(&self) -> Option<(Token, usize)> {
        self.tokens.get(self.at).cloned()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some((Token::Space, _))) {
            self.at += 1;
        }
    }

    fn skip_separators(&mut self) {
        while matches!(
            self.peek(),
            Some((Token::Space | Token::Newline | Token::Comma, _))
        ) {
            self.at += 1;
        }
    }

    /// Fields until `}` (when `braced`) or the end of the document.
    fn object(&mut self, prefix: &[String], braced: bool) -> Result<(), String> {
        if self.depth >= MAX_DEPTH {
            let line = self.peek().map_or(0, |(_, l)| l);
            return Err(format!(
                "line {line}: objects nested deeper than {MAX_DEPTH}"
            ));
        }
        self.depth += 1;
        let result = self.fields(prefix, braced);
        self.depth -= 1;
        result
    }

    fn fields(&mut self, prefix: &[String], braced: bool) -> Result<(), String> {
        loop {
            self.skip_separators();
            let Some((token, line)) = self.peek() else {
                return if braced {
                    Err("unterminated `{`: the document ends inside an object".into())
                } else {
                    Ok(())
                };
            };
            match token {
                Token::Close if braced => {
                    self.at += 1;
                    return Ok(());
                }
                Token::Word(w) if w == "include" => {
                    self.at += 1;
                    self.skip_spaces();
                    // include "file" | include required("file")
                    while !matches!(self.peek(), None | Some((Token::Newline, _))) {
                        self.at += 1;
                    }
                }
                Token::Word(_) | Token::Quoted(_) => {
                    let key = self.key(line)?;
                    let mut path = prefix.to_vec();
                    path.extend(key);
                    self.field(&path, line)?;
                }
                other => return Err(format!("line {line}: expected a key, found {other:?}")),
            }
        }
    }

    /// A key: unquoted words split at dots, quoted parts kept whole.
    fn key(&mut self, line: usize) -> Result<Vec<String>, String> {
        let mut segments = Vec::new();
        let mut current = String::new();
        let mut any = false;
        while let Some((token, _)) = self.peek() {
            match token {
                Token::Word(w) => {
                    let mut parts = w.split('.');
                    if let Some(first) = parts.next() {
                        current.push_str(first);
                    }
                    for part in parts {
                        segments.push(std::mem::take(&mut current));
                        current.push_str(part);
                    }
                }
                Token::Quoted(q) => current.push_str(&q),
                _ => break,
            }
            any = true;
            self.at += 1;
        }
        segments.push(current);
        if !any || segments.iter().any(String::is_empty) {
            return Err(format!("line {line}: empty key segment"));
        }
        Ok(segments)
    }

    fn field(&mut self, path: &[String], line: usize) -> Result<(), String> {
        self.skip_spaces();
        match self.peek() {
            Some((Token::Open, _)) => {
                self.at += 1;
                self.object(path, true)
            }
            Some((Token::Assign, _)) => {
                self.at += 1;
                self.skip_spaces();
                if matches!(self.peek(), Some((Token::Open, _))) {
                    self.at += 1;
                    return self.object(path, true);
                }
                let value = self.value(line)?;
                self.out.push(Assignment {
                    path: path.join("."),
                    value,
                });
                Ok(())
            }
            _ => Err(format!(
                "line {line}: `{}` needs `=`, `:` or `{{`",
                path.join(".")
            )),
        }
    }

    /// A scalar (concatenated parts up to the end of the line, a comma or
    /// a closing brace) or an array's raw text.
    fn value(&mut self, line: usize) -> Result<String, String> {
        if matches!(self.peek(), Some((Token::OpenArray, _))) {
            return self.array(line);
        }
        let mut value = String::new();
        let mut read_any = false;
        let mut pending_space = false;
        while let Some((token, _)) = self.peek() {
            match token {
                Token::Word(part) | Token::Quoted(part) => {
                    if pending_space && !value.is_empty() {
                        value.push(' ');
                    }
                    value.push_str(&part);
                }
                // `${a}` reads as Word("$") Open Word("a") Close.
                Token::Open if value.ends_with('$') => {
                    value.push('{');
                    self.at += 1;
                    while let Some((t, _)) = self.peek() {
                        self.at += 1;
                        match t {
                            Token::Close => break,
                            Token::Word(w) | Token::Quoted(w) => value.push_str(&w),
                            _ => {}
                        }
                    }
                    value.push('}');
                    pending_space = false;
                    read_any = true;
                    continue;
                }
                Token::Space => {
                    pending_space = true;
                    self.at += 1;
                    continue;
                }
                _ => break,
            }
            pending_space = false;
            read_any = true;
            self.at += 1;
        }
        if !read_any {
            return Err(format!("line {line}: a value is missing"));
        }
        Ok(value)
    }

    fn array(&mut self, line: usize) -> Result<String, String> {
        let mut depth = 0usize;
        let mut raw = String::new();
        while let Some((token, _)) = self.peek() {
            self.at += 1;
            match token {
                Token::OpenArray => {
                    depth += 1;
                    raw.push('[');
                }
                Token::CloseArray => {
                    depth -= 1;
                    raw.push(']');
                    if depth == 0 {
                        return Ok(raw);
                    }
                }
                Token::Word(w) => raw.push_str(&w),
                Token::Quoted(q) => {
                    raw.push('"');
                    raw.push_str(&q);
                    raw.push('"');
                }
                Token::Comma => raw.push(','),
                Token::Open => raw.push('{'),
                Token::Close => raw.push('}'),
                Token::Assign => raw.push('='),
                Token::Space | Token::Newline => {}
            }
        }
        Err(format!("line {line}: unterminated `[`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_of_writing_a_nested_key_is_the_same_path() {
        for doc in [
            "license { key = \"abc\" }",
            "license {\n  key = abc\n}",
            "license = { key: \"abc\" }",
            "license.key = abc",
            "{ license { key = abc } }",
            "# comment\nlicense { // another\n key = \"abc\" # trailing\n}",
            "\"license\".key = \"\"\"abc\"\"\"",
        ] {
            assert_eq!(
                lookup(doc, "license.key"),
                Ok(Some("abc".into())),
                "{doc:?}"
            );
        }
    }

    #[test]
    fn the_last_assignment_wins_and_others_are_kept() {
        let doc = "node.name = \"emqx@a\"\nlicense { key = one }\nlisteners.tcp.default {\n bind = \"0.0.0.0:1883\"\n max_connections = 1024\n}\nauthn = [{a = 1}, {b = \"x\"}]\nlicense.key = two\n";
        assert_eq!(lookup(doc, "license.key"), Ok(Some("two".into())));
        assert_eq!(
            lookup(doc, "listeners.tcp.default.bind"),
            Ok(Some("0.0.0.0:1883".into()))
        );
        assert_eq!(lookup(doc, "authn"), Ok(Some("[{a=1},{b=\"x\"}]".into())));
        assert_eq!(lookup(doc, "license.other"), Ok(None));
        assert_eq!(lookup("", "license.key"), Ok(None));
        assert_eq!(lookup("a = \"\"", "a"), Ok(Some(String::new())));
        assert_eq!(lookup("a = ${HOME} x", "a"), Ok(Some("${HOME} x".into())));
    }

    #[test]
    fn broken_documents_name_the_line() {
        for (doc, line) in [
            ("a {\n b = 1\n", "unterminated"),
            ("a = \"open\n", "line 1"),
            ("a\nb = 1", "line 1"),
            ("x = 1\ny =", "line 2"),
            ("x = [1, 2", "line 1"),
            ("x.. = 1", "line 1"),
            ("x += 1", "line 1"),
            ("{ a = 1 } b = 2", "line 1"),
            ("a = \"\\q\"", "line 1"),
        ] {
            let e = flatten(doc).expect_err(doc);
            assert!(e.contains(line), "{doc:?}: {e}");
        }
    }

    #[test]
    fn hostile_nesting_is_refused_not_a_stack_overflow() {
        let deep = "a {".repeat(200_000);
        let e = flatten(&deep).expect_err("too deep");
        assert!(e.contains("nested deeper than"), "{e}");
        let dotted = format!("{} = 1", vec!["k"; 10_000].join("."));
        assert_eq!(flatten(&dotted).map(|a| a.len()), Ok(1));
        let ok = format!(
            "{}x = 1{}",
            "a {".repeat(MAX_DEPTH - 1),
            "}".repeat(MAX_DEPTH - 1)
        );
        assert!(flatten(&ok).is_ok());
    }
}
