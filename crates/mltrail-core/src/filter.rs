//! MLflow's search-filter grammar: `clause (AND clause)*`, where a clause is
//! `entity.key op value` (`metrics.acc > 0.9`, `params.lr = '0.1'`, `tags.\`mlflow.user\` LIKE 'a%'`,
//! `attributes.status IN ('RUNNING', 'FINISHED')`, `tags.x IS NULL`), plus `order_by` terms
//! (`metrics.acc DESC`). Registry filters use the same grammar with bare keys (`name LIKE 'x%'`).
//! The parser produces a typed AST; stores compile it to SQL with bound parameters only.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

impl Op {
    pub fn sql(&self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Like => "LIKE",
            Op::ILike => "ILIKE",
            Op::In => "IN",
            Op::NotIn => "NOT IN",
            Op::IsNull => "IS NULL",
            Op::IsNotNull => "IS NOT NULL",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(f64),
    Text(String),
    List(Vec<Literal>),
    None,
}

impl Literal {
    pub fn as_text(&self) -> Option<String> {
        match self {
            Literal::Text(s) => Some(s.clone()),
            Literal::Number(n) => Some(format_number(*n)),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Literal::Number(n) => Some(*n),
            Literal::Text(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub entity: Entity,
    pub key: String,
    pub op: Op,
    pub value: Literal,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderTerm {
    pub entity: Entity,
    pub key: String,
    pub ascending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FilterError(pub String);

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident { entity: Option<String>, key: String },
    Text(String),
    Number(f64),
    Op(Op),
    Word(String),
    LParen,
    RParen,
    Comma,
}

fn tokenize(input: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let err = |msg: String| Err(FilterError(msg));
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '(' => {
                tokens.push(Token::LParen);
                i += 1;
            }
            ')' => {
                tokens.push(Token::RParen);
                i += 1;
            }
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            '\'' | '"' | '`' => {
                let (text, next) = read_quoted(&chars, i)?;
                i = next;
                // A quoted word directly followed by a comparison is a key (`"name" = 'x'`)
                // only for backticks; quotes denote string values.
                if c == '`' {
                    tokens.push(Token::Ident {
                        entity: None,
                        key: text,
                    });
                } else {
                    tokens.push(Token::Text(text));
                }
            }
            '=' => {
                tokens.push(Token::Op(Op::Eq));
                i += if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                tokens.push(Token::Op(Op::Ne));
                i += 2;
            }
            '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let (op, width) = match (c, next) {
                    ('<', Some('=')) => (Op::Le, 2),
                    ('<', Some('>')) => (Op::Ne, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', Some('=')) => (Op::Ge, 2),
                    _ => (Op::Gt, 1),
                };
                tokens.push(Token::Op(op));
                i += width;
            }
            c if c.is_ascii_digit()
                || ((c == '-' || c == '+' || c == '.')
                    && chars
                        .get(i + 1)
                        .is_some_and(|n| n.is_ascii_digit() || *n == '.')) =>
            {
                let start = i;
                i += 1;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric()
                        || chars[i] == '.'
                        || ((chars[i] == '-' || chars[i] == '+')
                            && matches!(chars[i - 1], 'e' | 'E')))
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                match text.parse::<f64>() {
                    Ok(n) => tokens.push(Token::Number(n)),
                    Err(_) => return err(format!("invalid number {text:?} in filter")),
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric()
                        || matches!(chars[i], '_' | '.' | '-' | ':' | '/'))
                {
                    if chars[i] == '.' && matches!(chars.get(i + 1), Some('`') | Some('"')) {
                        break;
                    }
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if chars.get(i) == Some(&'.') {
                    // entity.`quoted key` or entity."quoted key"
                    let (key, next) = read_quoted(&chars, i + 1)?;
                    i = next;
                    tokens.push(Token::Ident {
                        entity: Some(word),
                        key,
                    });
                    continue;
                }
                let upper = word.to_ascii_uppercase();
                if matches!(
                    upper.as_str(),
                    "AND" | "LIKE" | "ILIKE" | "IN" | "NOT" | "IS" | "NULL" | "ASC" | "DESC" | "OR"
                ) {
                    tokens.push(Token::Word(upper));
                } else if let Some((entity, key)) = word.split_once('.') {
                    tokens.push(Token::Ident {
                        entity: Some(entity.to_string()),
                        key: key.to_string(),
                    });
                } else {
                    tokens.push(Token::Ident {
                        entity: None,
                        key: word,
                    });
                }
            }
            other => {
                return err(format!(
                    "unexpected character {other:?} in filter {input:?}"
                ))
            }
        }
    }
    Ok(tokens)
}

fn read_quoted(chars: &[char], start: usize) -> Result<(String, usize), FilterError> {
    let quote = chars[start];
    let mut out = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == quote {
            // SQL-style doubled quote escapes the quote itself.
            if chars.get(i + 1) == Some(&quote) {
                out.push(quote);
                i += 2;
                continue;
            }
            return Ok((out, i + 1));
        }
        if chars[i] == '\\' && chars.get(i + 1) == Some(&quote) {
            out.push(quote);
            i += 2;
            continue;
        }
        out.push(chars[i]);
        i += 1;
    }
    Err(FilterError(format!("unterminated {quote} quote in filter")))
}

fn entity_of(name: Option<&str>) -> Result<Entity, FilterError> {
    let Some(name) = name else {
        return Ok(Entity::Attribute);
    };
    match name.to_ascii_lowercase().as_str() {
        "metric" | "metrics" => Ok(Entity::Metric),
        "param" | "params" | "parameter" | "parameters" => Ok(Entity::Param),
        "tag" | "tags" => Ok(Entity::Tag),
        "attribute" | "attributes" | "attr" | "run" => Ok(Entity::Attribute),
        "dataset" | "datasets" => Ok(Entity::Dataset),
        other => Err(FilterError(format!(
            "invalid entity type '{other}'; expected one of metrics, params, tags, attributes, datasets"
        ))),
    }
}

/// Parses a filter string; an empty or blank string is no filter at all.
pub fn parse_filter(input: &str) -> Result<Vec<Clause>, FilterError> {
    let tokens = tokenize(input)?;
    let mut clauses = Vec::new();
    let mut pos = 0;
    while pos < tokens.len() {
        let (entity, key) = match &tokens[pos] {
            Token::Ident { entity, key } => (entity_of(entity.as_deref())?, key.clone()),
            other => {
                return Err(FilterError(format!(
                    "expected a key such as metrics.acc, found {other:?}"
                )))
            }
        };
        pos += 1;
        let word = |p: usize| match tokens.get(p) {
            Some(Token::Word(w)) => Some(w.as_str()),
            _ => None,
        };
        let op = match (tokens.get(pos), word(pos + 1)) {
            (Some(Token::Op(op)), _) => {
                pos += 1;
                *op
            }
            (Some(Token::Word(w)), next) => match (w.as_str(), next) {
                ("LIKE", _) => {
                    pos += 1;
                    Op::Like
                }
                ("ILIKE", _) => {
                    pos += 1;
                    Op::ILike
                }
                ("IN", _) => {
                    pos += 1;
                    Op::In
                }
                ("NOT", Some("IN")) => {
                    pos += 2;
                    Op::NotIn
                }
                ("IS", Some("NULL")) => {
                    pos += 2;
                    Op::IsNull
                }
                ("IS", Some("NOT")) if word(pos + 2) == Some("NULL") => {
                    pos += 3;
                    Op::IsNotNull
                }
                _ => return Err(FilterError(format!("invalid comparator after '{key}'"))),
            },
            _ => return Err(FilterError(format!("expected a comparator after '{key}'"))),
        };
        let value = match op {
            Op::IsNull | Op::IsNotNull => Literal::None,
            Op::In | Op::NotIn => {
                if tokens.get(pos) != Some(&Token::LParen) {
                    return Err(FilterError(format!("expected '(' after IN for '{key}'")));
                }
                pos += 1;
                let mut items = Vec::new();
                loop {
                    match tokens.get(pos) {
                        Some(Token::Text(s)) => items.push(Literal::Text(s.clone())),
                        Some(Token::Number(n)) => items.push(Literal::Number(*n)),
                        _ => {
                            return Err(FilterError(format!(
                                "expected a quoted value in the IN list for '{key}'"
                            )))
                        }
                    }
                    pos += 1;
                    match tokens.get(pos) {
                        Some(Token::Comma) => pos += 1,
                        Some(Token::RParen) => {
                            pos += 1;
                            break;
                        }
                        _ => {
                            return Err(FilterError(format!(
                                "expected ',' or ')' in the IN list for '{key}'"
                            )))
                        }
                    }
                }
                Literal::List(items)
            }
            _ => {
                let value = match tokens.get(pos) {
                    Some(Token::Text(s)) => Literal::Text(s.clone()),
                    Some(Token::Number(n)) => Literal::Number(*n),
                    _ => {
                        return Err(FilterError(format!(
                            "expected a value after '{key} {}'",
                            op.sql()
                        )))
                    }
                };
                pos += 1;
                value
            }
        };
        if entity == Entity::Metric
            && !matches!(value, Literal::Number(_))
            && !matches!(op, Op::IsNull | Op::IsNotNull)
        {
            return Err(FilterError(format!(
                "metric '{key}' must be compared with a number"
            )));
        }
        clauses.push(Clause {
            entity,
            key,
            op,
            value,
        });
        match tokens.get(pos) {
            None => {}
            Some(Token::Word(w)) if w == "AND" => {
                pos += 1;
                if pos >= tokens.len() {
                    return Err(FilterError("filter ends with AND".into()));
                }
            }
            Some(Token::Word(w)) if w == "OR" => {
                return Err(FilterError(
                    "OR is not supported in search filters; use AND".into(),
                ))
            }
            Some(other) => {
                return Err(FilterError(format!(
                    "expected AND between clauses, found {other:?}"
                )))
            }
        }
    }
    Ok(clauses)
}

/// Parses one `order_by` term such as `metrics.acc DESC` or `start_time`.
pub fn parse_order_by(input: &str) -> Result<OrderTerm, FilterError> {
    let tokens = tokenize(input)?;
    let (entity, key) = match tokens.first() {
        Some(Token::Ident { entity, key }) => (entity_of(entity.as_deref())?, key.clone()),
        _ => return Err(FilterError(format!("invalid order_by clause {input:?}"))),
    };
    let ascending = match tokens.get(1) {
        None => true,
        Some(Token::Word(w)) if w == "ASC" => true,
        Some(Token::Word(w)) if w == "DESC" => false,
        _ => {
            return Err(FilterError(format!(
                "invalid order_by clause {input:?}: expected ASC or DESC"
            )))
        }
    };
    if tokens.len() > 2 {
        return Err(FilterError(format!("invalid order_by clause {input:?}")));
    }
    Ok(OrderTerm {
        entity,
        key,
        ascending,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_mlflow_docs_examples() {
        let clauses = parse_filter(
            "metrics.rmse < 1 and params.model = 'tree' AND tags.`mlflow.user` LIKE 'al%' and attributes.status IN ('RUNNING','FINISHED')",
        )
        .unwrap();
        assert_eq!(clauses.len(), 4);
        assert_eq!(
            clauses[0],
            Clause {
                entity: Entity::Metric,
                key: "rmse".into(),
                op: Op::Lt,
                value: Literal::Number(1.0)
            }
        );
        assert_eq!(clauses[2].key, "mlflow.user");
        assert_eq!(clauses[3].op, Op::In);
        assert_eq!(
            clauses[3].value,
            Literal::List(vec![
                Literal::Text("RUNNING".into()),
                Literal::Text("FINISHED".into())
            ])
        );
    }

    #[test]
    fn parses_quoted_keys_nulls_and_bare_registry_keys() {
        let c = parse_filter(
            r#"tags."my tag" IS NOT NULL AND name ILIKE '%Credit%' AND metrics.loss >= -1.5e-3"#,
        )
        .unwrap();
        assert_eq!(c[0].key, "my tag");
        assert_eq!(c[0].op, Op::IsNotNull);
        assert_eq!(c[1].entity, Entity::Attribute);
        assert_eq!(c[2].value, Literal::Number(-1.5e-3));
        assert!(parse_filter("").unwrap().is_empty());
        assert_eq!(
            parse_filter("tags.mlflow.runName = 'x'").unwrap()[0].key,
            "mlflow.runName"
        );
    }

    #[test]
    fn refuses_malformed_filters_with_a_reason() {
        for bad in [
            "metrics.acc >",
            "metrics.acc > 'x'",
            "foo.bar = 1",
            "metrics.a > 1 OR metrics.b > 1",
            "params.p = 'x",
            "params.p IN 'x'",
            "metrics.a > 1 AND",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn parses_order_by() {
        assert_eq!(
            parse_order_by("metrics.acc DESC").unwrap(),
            OrderTerm {
                entity: Entity::Metric,
                key: "acc".into(),
                ascending: false
            }
        );
        assert!(parse_order_by("start_time").unwrap().ascending);
        assert!(parse_order_by("metrics.acc SIDEWAYS").is_err());
    }
}
