//! Just enough SQL lexing to check an app definition without a database: find
//! `:named` parameters (outside strings, quoted names and comments), rewrite them
//! into the positional placeholders SQLite (`?1`) or Postgres (`$1`) bind, and
//! list the identifiers an expression or statement mentions. The database that
//! finally prepares a statement is the real judge; this catches the mistakes a
//! developer makes most (typos in names, undeclared parameters) at load time,
//! with a message that names the mutator or table.

use std::fmt;

/// One lexical token of a SQL text, with its byte range in the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// An unquoted identifier or keyword, as written.
    Word(String),
    /// A `"quoted"` identifier, unescaped.
    Quoted(String),
    /// A `:name` parameter (the name without the colon).
    Param(String),
    /// A string or blob literal.
    Literal,
    Number,
    /// Any other single character (operators, parentheses, commas, `;`).
    Punct(char),
}

impl TokenKind {
    /// The identifier this token names, lowercased if it was unquoted (both
    /// SQLite and Postgres ignore the case of unquoted names).
    pub fn identifier(&self) -> Option<String> {
        match self {
            TokenKind::Word(w) => Some(w.to_ascii_lowercase()),
            TokenKind::Quoted(q) => Some(q.clone()),
            _ => None,
        }
    }

    /// Whether this is the unquoted word `kw` (case-insensitive).
    pub fn is_word(&self, kw: &str) -> bool {
        matches!(self, TokenKind::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

/// Why a SQL text could not be lexed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LexError {
    Unterminated(&'static str),
    /// `?`, `?1`, `$1`, `@x`: only `:named` parameters are portable between the
    /// engines once rewritten, and names are what mutator arguments carry.
    UnsupportedPlaceholder(String),
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LexError::Unterminated(what) => write!(f, "unterminated {what}"),
            LexError::UnsupportedPlaceholder(p) => write!(
                f,
                "placeholder `{p}` is not supported: use `:name` parameters"
            ),
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Splits `sql` into tokens, dropping whitespace and comments.
pub fn tokenize(sql: &str) -> Result<Vec<Token>, LexError> {
    let bytes: Vec<(usize, char)> = sql.char_indices().collect();
    let at = |i: usize| bytes.get(i).map(|&(_, c)| c);
    let offset = |i: usize| bytes.get(i).map_or(sql.len(), |&(o, _)| o);
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        let start = i;
        let kind = if c.is_whitespace() {
            i += 1;
            continue;
        } else if c == '-' && at(i + 1) == Some('-') {
            while at(i).is_some_and(|c| c != '\n') {
                i += 1;
            }
            continue;
        } else if c == '/' && at(i + 1) == Some('*') {
            i += 2;
            loop {
                match at(i) {
                    None => return Err(LexError::Unterminated("comment")),
                    Some('*') if at(i + 1) == Some('/') => break,
                    Some(_) => i += 1,
                }
            }
            i += 2;
            continue;
        } else if c == '\'' || c == '"' {
            // Quotes are escaped by doubling them, in both engines.
            let mut text = String::new();
            i += 1;
            loop {
                match at(i) {
                    None if c == '\'' => return Err(LexError::Unterminated("string")),
                    None => return Err(LexError::Unterminated("quoted identifier")),
                    Some(q) if q == c && at(i + 1) == Some(c) => {
                        text.push(c);
                        i += 2;
                    }
                    Some(q) if q == c => break,
                    Some(other) => {
                        text.push(other);
                        i += 1;
                    }
                }
            }
            i += 1;
            if c == '\'' {
                TokenKind::Literal
            } else {
                TokenKind::Quoted(text)
            }
        } else if c == ':' && at(i + 1).is_some_and(is_ident_start) {
            i += 1;
            while at(i).is_some_and(is_ident_char) {
                i += 1;
            }
            TokenKind::Param(sql[offset(start + 1)..offset(i)].to_owned())
        } else if c == ':' && at(i + 1) == Some(':') {
            // A Postgres cast (`x::text`): two colons, no parameter.
            i += 2;
            TokenKind::Punct(':')
        } else if matches!(c, '?' | '$' | '@') && (c == '?' || at(i + 1).is_some_and(is_ident_char))
        {
            i += 1;
            while at(i).is_some_and(is_ident_char) {
                i += 1;
            }
            return Err(LexError::UnsupportedPlaceholder(
                sql[offset(start)..offset(i)].to_owned(),
            ));
        } else if is_ident_start(c) {
            while at(i).is_some_and(|c| is_ident_char(c) || c == '$') {
                i += 1;
            }
            TokenKind::Word(sql[offset(start)..offset(i)].to_owned())
        } else if c.is_ascii_digit() || (c == '.' && at(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            while at(i).is_some_and(|c| c.is_ascii_alphanumeric() || c == '.') {
                i += 1;
            }
            TokenKind::Number
        } else {
            i += 1;
            TokenKind::Punct(c)
        };
        tokens.push(Token {
            kind,
            start: offset(start),
            end: offset(i),
        });
    }
    Ok(tokens)
}

/// How positional placeholders are spelled by the engine that runs a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholders {
    /// SQLite: `?1`, `?2`, …
    Question,
    /// Postgres: `$1`, `$2`, …
    Dollar,
    /// Columns `<prefix>1`, `<prefix>2`, … of a joined row: a statement run
    /// once for many argument lists, one row each.
    Columns(&'static str),
}

/// A SQL statement whose `:named` parameters were found, ready to be rendered
/// with positional placeholders for one engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The statement as written in the app definition.
    pub source: String,
    /// Parameter names in order of first appearance: the `n`-th name binds to
    /// placeholder `n + 1`; a name used twice binds once.
    pub params: Vec<String>,
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// Index into `params`.
    Param(usize),
}

impl Statement {
    /// Lexes `source` and records where its parameters are.
    pub fn parse(source: &str) -> Result<Statement, LexError> {
        let tokens = tokenize(source)?;
        let mut params: Vec<String> = Vec::new();
        let mut pieces = Vec::new();
        let mut copied = 0;
        for token in &tokens {
            if let TokenKind::Param(name) = &token.kind {
                pieces.push(Piece::Text(source[copied..token.start].to_owned()));
                let index = match params.iter().position(|p| p == name) {
                    Some(i) => i,
                    None => {
                        params.push(name.clone());
                        params.len() - 1
                    }
                };
                pieces.push(Piece::Param(index));
                copied = token.end;
            }
        }
        pieces.push(Piece::Text(source[copied..].to_owned()));
        Ok(Statement {
            source: source.to_owned(),
            params,
            pieces,
        })
    }

    /// The statement with each `:name` replaced by its positional placeholder.
    pub fn render(&self, style: Placeholders) -> String {
        let mut out = String::with_capacity(self.source.len());
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Param(i) => {
                    out.push_str(match style {
                        Placeholders::Question => "?",
                        Placeholders::Dollar => "$",
                        Placeholders::Columns(prefix) => prefix,
                    });
                    out.push_str(&(i + 1).to_string());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_params_outside_strings_comments_and_quoted_names() {
        let s = Statement::parse(
            "INSERT INTO t (\":no\", b) VALUES (:a, ':no') -- :no\n ON CONFLICT (a) DO UPDATE SET b = :b /* :no */ + :a",
        )
        .unwrap();
        assert_eq!(s.params, ["a", "b"]);
        assert_eq!(
            s.render(Placeholders::Question),
            "INSERT INTO t (\":no\", b) VALUES (?1, ':no') -- :no\n ON CONFLICT (a) DO UPDATE SET b = ?2 /* :no */ + ?1"
        );
        assert!(s.render(Placeholders::Dollar).contains("b = $2"));
    }

    #[test]
    fn casts_are_not_params_and_positional_placeholders_are_refused() {
        assert!(Statement::parse("SELECT x::text")
            .unwrap()
            .params
            .is_empty());
        for bad in ["SELECT ?", "SELECT ?1", "SELECT $1", "SELECT @x"] {
            assert!(
                matches!(
                    Statement::parse(bad),
                    Err(LexError::UnsupportedPlaceholder(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn unterminated_text_is_an_error() {
        for bad in ["SELECT 'x", "SELECT \"x", "SELECT /* x"] {
            assert!(
                matches!(tokenize(bad), Err(LexError::Unterminated(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn doubled_quotes_stay_inside_the_token() {
        let tokens = tokenize("'it''s' \"a\"\"b\" é").unwrap();
        assert_eq!(tokens[0].kind, TokenKind::Literal);
        assert_eq!(tokens[1].kind, TokenKind::Quoted("a\"b".into()));
        assert_eq!(tokens[2].kind, TokenKind::Punct('é'));
    }
}
