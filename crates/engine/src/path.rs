//! Reference paths, payload templates and the few intrinsic functions we allow.
//!
//! AWS's JSONPath dialect is Jayway-like and differs from RFC 9535 at the edges, so we
//! only accept *reference paths* (`$`, `$.a.b`, `$.a[0]`, `$['a b']`, and `$$.` for the
//! context object): they select at most one node, which is all InputPath, OutputPath,
//! ResultPath and `.$` fields need. Anything fancier is refused when the definition is
//! loaded instead of being evaluated differently from AWS.

use serde_json::{Map, Value};

/// A parsed reference path. `context` is true for `$$` paths (the context object).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Path {
    text: String,
    context: bool,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Field(String),
    Index(usize),
}

impl Path {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (context, rest) = match text.strip_prefix("$$") {
            Some(rest) => (true, rest),
            None => match text.strip_prefix('$') {
                Some(rest) => (false, rest),
                None => return Err(format!("path {text:?} must start with `$`")),
            },
        };
        let refuse = || {
            format!(
                "path {text:?} is not a reference path (only `.name`, `[n]` and `['name']` steps are supported)"
            )
        };
        let mut segments = Vec::new();
        let mut rest = rest;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('.') {
                let end = after.find(['.', '[']).unwrap_or(after.len());
                let name = &after[..end];
                if name.is_empty() || name.contains(['*', '?', '@', '(', ')', ']', ' ', '\'']) {
                    return Err(refuse());
                }
                segments.push(Segment::Field(name.to_owned()));
                rest = &after[end..];
            } else if let Some(after) = rest.strip_prefix("['") {
                let end = after.find("']").ok_or_else(refuse)?;
                segments.push(Segment::Field(after[..end].to_owned()));
                rest = &after[end + 2..];
            } else if let Some(after) = rest.strip_prefix('[') {
                let end = after.find(']').ok_or_else(refuse)?;
                let index = after[..end].parse::<usize>().map_err(|_| refuse())?;
                segments.push(Segment::Index(index));
                rest = &after[end + 1..];
            } else {
                return Err(refuse());
            }
        }
        Ok(Self {
            text: text.to_owned(),
            context,
            segments,
        })
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn is_context(&self) -> bool {
        self.context
    }

    /// The node this path points at in `input` (or in `context` for a `$$` path).
    pub(crate) fn select<'v>(&self, input: &'v Value, context: &'v Value) -> Option<&'v Value> {
        let root = if self.context { context } else { input };
        self.segments
            .iter()
            .try_fold(root, |node, segment| match segment {
                Segment::Field(name) => node.as_object()?.get(name),
                Segment::Index(i) => node.as_array()?.get(*i),
            })
    }

    /// Writes `value` at this path inside `target` (ResultPath semantics): `$` replaces the
    /// whole document, missing intermediate objects are created, and a step through a
    /// non-object (or an array index out of range) is an error.
    pub(crate) fn write(&self, mut target: Value, value: Value) -> Result<Value, String> {
        let Some((last, parents)) = self.segments.split_last() else {
            return Ok(value);
        };
        let fail = || {
            format!(
                "unable to apply ResultPath {:?} to the state input",
                self.text
            )
        };
        let mut node = &mut target;
        for segment in parents {
            node = match segment {
                Segment::Field(name) => node
                    .as_object_mut()
                    .ok_or_else(fail)?
                    .entry(name.clone())
                    .or_insert_with(|| Value::Object(Map::new())),
                Segment::Index(i) => node
                    .as_array_mut()
                    .and_then(|a| a.get_mut(*i))
                    .ok_or_else(fail)?,
            };
        }
        match last {
            Segment::Field(name) => {
                node.as_object_mut()
                    .ok_or_else(fail)?
                    .insert(name.clone(), value);
            }
            Segment::Index(i) => {
                *node
                    .as_array_mut()
                    .and_then(|a| a.get_mut(*i))
                    .ok_or_else(fail)? = value;
            }
        }
        Ok(target)
    }
}

/// A compiled `Parameters` or `ResultSelector` payload template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Template {
    Literal(Value),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
    Path(Path),
    Call(Call),
}

impl Template {
    /// Compiles a template, resolving `.$` keys to paths or intrinsic calls up front so that
    /// a typo or an unsupported intrinsic is refused when the definition loads.
    pub(crate) fn compile(value: &Value) -> Result<Self, String> {
        Ok(match value {
            Value::Object(map) => Self::Object(
                map.iter()
                    .map(|(key, v)| match key.strip_suffix(".$") {
                        Some(name) => {
                            let Value::String(expr) = v else {
                                return Err(format!(
                                    "field {key:?} must be a string path or intrinsic function"
                                ));
                            };
                            let dynamic = if expr.starts_with('$') {
                                Self::Path(Path::parse(expr)?)
                            } else {
                                Self::Call(Call::parse(expr)?)
                            };
                            Ok((name.to_owned(), dynamic))
                        }
                        None => Ok((key.clone(), Self::compile(v)?)),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Value::Array(items) => {
                Self::Array(items.iter().map(Self::compile).collect::<Result<_, _>>()?)
            }
            other => Self::Literal(other.clone()),
        })
    }

    /// Renders the template; an `Err` is the cause of a `States.Runtime` failure.
    pub(crate) fn render(&self, input: &Value, context: &Value) -> Result<Value, String> {
        Ok(match self {
            Self::Literal(v) => v.clone(),
            Self::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, t)| Ok((k.clone(), t.render(input, context)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Self::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|t| t.render(input, context))
                    .collect::<Result<_, _>>()?,
            ),
            Self::Path(path) => select(path, input, context)?.clone(),
            Self::Call(call) => call.eval(input, context)?,
        })
    }
}

/// Selects with a path, turning "nothing there" into the cause of a `States.Runtime` error.
pub(crate) fn select<'v>(
    path: &Path,
    input: &'v Value,
    context: &'v Value,
) -> Result<&'v Value, String> {
    path.select(input, context).ok_or_else(|| {
        format!(
            "the JSONPath {:?} could not be found in the input",
            path.text()
        )
    })
}

/// An intrinsic function call. Only the four functions our definition uses are accepted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    function: Function,
    args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
enum Function {
    /// The template is split at `{}` at load time, so escaped braces stay literal.
    Format(Vec<String>),
    JsonToString,
    StringToJson,
    JsonMerge,
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Literal(Value),
    Path(Path),
    Call(Call),
}

impl Call {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut parser = Parser { text, pos: 0 };
        let call = parser.call()?;
        parser.skip_ws();
        if parser.pos != text.len() {
            return Err(format!(
                "unexpected text after the intrinsic function in {text:?}"
            ));
        }
        Ok(call)
    }

    fn eval(&self, input: &Value, context: &Value) -> Result<Value, String> {
        let args = self
            .args
            .iter()
            .map(|arg| match arg {
                Arg::Literal(v) => Ok(v.clone()),
                Arg::Path(p) => select(p, input, context).cloned(),
                Arg::Call(c) => c.eval(input, context),
            })
            .collect::<Result<Vec<_>, _>>()?;
        match &self.function {
            Function::Format(pieces) => {
                let mut out = pieces[0].clone();
                for (arg, piece) in args.iter().zip(&pieces[1..]) {
                    match arg {
                        Value::String(s) => out.push_str(s),
                        Value::Object(_) | Value::Array(_) => {
                            return Err("States.Format arguments must be strings, numbers, booleans or null".into());
                        }
                        scalar => out.push_str(&scalar.to_string()),
                    }
                    out.push_str(piece);
                }
                Ok(Value::String(out))
            }
            Function::JsonToString => Ok(Value::String(args[0].to_string())),
            Function::StringToJson => match &args[0] {
                Value::String(s) => {
                    serde_json::from_str(s).map_err(|e| format!("States.StringToJson: {e}"))
                }
                _ => Err("States.StringToJson expects a string".into()),
            },
            Function::JsonMerge => match (&args[0], &args[1]) {
                (Value::Object(a), Value::Object(b)) => {
                    let mut merged = a.clone();
                    merged.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
                    Ok(Value::Object(merged))
                }
                _ => Err("States.JsonMerge expects two objects".into()),
            },
        }
    }
}

struct Parser<'t> {
    text: &'t str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    fn skip_ws(&mut self) {
        self.pos = self.text.len() - self.rest().trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        let found = self.rest().starts_with(token);
        if found {
            self.pos += token.len();
        }
        found
    }

    fn call(&mut self) -> Result<Call, String> {
        self.skip_ws();
        let name_len = self
            .rest()
            .find('(')
            .ok_or_else(|| format!("{:?} is not an intrinsic function call", self.text))?;
        let name = self.rest()[..name_len].trim().to_owned();
        self.pos += name_len + 1;
        let mut raw_args = Vec::new();
        if !self.eat(")") {
            loop {
                raw_args.push(self.arg()?);
                if self.eat(")") {
                    break;
                }
                if !self.eat(",") {
                    return Err(format!("expected `,` or `)` in {:?}", self.text));
                }
            }
        }
        let arity = |n: usize| match raw_args.len() == n {
            true => Ok(()),
            false => Err(format!(
                "{name} takes {n} argument(s), got {}",
                raw_args.len()
            )),
        };
        let function = match name.as_str() {
            "States.Format" => {
                let Some(RawArg::Str(template)) = raw_args.first() else {
                    return Err(
                        "States.Format needs a literal template string as its first argument"
                            .into(),
                    );
                };
                let pieces = split_format(template);
                if pieces.len() != raw_args.len() {
                    return Err(format!(
                        "States.Format template has {} placeholder(s) but {} argument(s)",
                        pieces.len() - 1,
                        raw_args.len() - 1
                    ));
                }
                raw_args.remove(0);
                Function::Format(pieces)
            }
            "States.JsonToString" => arity(1).map(|()| Function::JsonToString)?,
            "States.StringToJson" => arity(1).map(|()| Function::StringToJson)?,
            "States.JsonMerge" => {
                arity(3)?;
                if !matches!(raw_args[2], RawArg::Done(Arg::Literal(Value::Bool(false)))) {
                    return Err(
                        "States.JsonMerge only supports a shallow merge (third argument `false`)"
                            .into(),
                    );
                }
                raw_args.pop();
                Function::JsonMerge
            }
            other => {
                return Err(format!(
                    "intrinsic function {other:?} is not supported (only States.Format, States.JsonToString, States.StringToJson, States.JsonMerge)"
                ));
            }
        };
        let args = raw_args
            .into_iter()
            .map(|a| match a {
                RawArg::Str(s) => Arg::Literal(Value::String(unescape(&s))),
                RawArg::Done(arg) => arg,
            })
            .collect();
        Ok(Call { function, args })
    }

    fn arg(&mut self) -> Result<RawArg, String> {
        self.skip_ws();
        let text = self.text;
        let rest = &text[self.pos..];
        if let Some(body) = rest.strip_prefix('\'') {
            // Keep escapes raw: States.Format must still tell `\{` from `{`.
            let mut escaped = false;
            let end = body
                .char_indices()
                .find(|&(_, c)| match (escaped, c) {
                    (true, _) => {
                        escaped = false;
                        false
                    }
                    (false, '\\') => {
                        escaped = true;
                        false
                    }
                    (false, c) => c == '\'',
                })
                .map(|(i, _)| i)
                .ok_or_else(|| format!("unterminated string in {:?}", self.text))?;
            self.pos += end + 2;
            return Ok(RawArg::Str(body[..end].to_owned()));
        }
        if rest.starts_with("States.") {
            return Ok(RawArg::Done(Arg::Call(self.call()?)));
        }
        let mut depth = 0usize;
        let len = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '[' => depth += 1,
                    ']' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                depth == 0 && (c == ',' || c == ')')
            })
            .map_or(rest.len(), |(i, _)| i);
        let token = rest[..len].trim().to_owned();
        self.pos += len;
        if token.starts_with('$') {
            return Ok(RawArg::Done(Arg::Path(Path::parse(&token)?)));
        }
        match serde_json::from_str::<Value>(&token) {
            Ok(v) if !v.is_object() && !v.is_array() && !v.is_string() => {
                Ok(RawArg::Done(Arg::Literal(v)))
            }
            _ => Err(format!("invalid intrinsic function argument {token:?}")),
        }
    }
}

enum RawArg {
    /// A single-quoted string with its escapes still in place.
    Str(String),
    Done(Arg),
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or('\\')
        } else {
            c
        });
    }
    out
}

/// Splits a States.Format template at its unescaped `{}` placeholders.
fn split_format(raw: &str) -> Vec<String> {
    let mut pieces = vec![String::new()];
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => pieces
                .last_mut()
                .unwrap()
                .push(chars.next().unwrap_or('\\')),
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                pieces.push(String::new());
            }
            c => pieces.last_mut().unwrap().push(c),
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reference_paths_select() {
        let input = json!({"a": {"b": [10, {"c": "x"}]}, "sp ace": 1});
        let ctx = json!({"State": {"RetryCount": 2}});
        let cases = [
            ("$", Some(input.clone())),
            ("$.a.b[0]", Some(json!(10))),
            ("$.a.b[1].c", Some(json!("x"))),
            ("$['sp ace']", Some(json!(1))),
            ("$.a.missing", None),
            ("$.a.b[5]", None),
            ("$$.State.RetryCount", Some(json!(2))),
        ];
        for (text, expected) in cases {
            let path = Path::parse(text).unwrap();
            assert_eq!(path.select(&input, &ctx).cloned(), expected, "{text}");
        }
    }

    #[test]
    fn non_reference_paths_are_refused() {
        for text in [
            "a.b",
            "$..a",
            "$.a[*]",
            "$.a[?(@.x)]",
            "$.a[-1]",
            "$.",
            "$a",
        ] {
            assert!(Path::parse(text).is_err(), "{text} should be refused");
        }
    }

    #[test]
    fn result_path_writes() {
        let cases = [
            ("$", json!({"a": 1}), Ok(json!("r"))),
            ("$.res", json!({"a": 1}), Ok(json!({"a": 1, "res": "r"}))),
            ("$.x.y", json!({}), Ok(json!({"x": {"y": "r"}}))),
            ("$.a[1]", json!({"a": [0, 0]}), Ok(json!({"a": [0, "r"]}))),
            ("$.a.b", json!({"a": 1}), Err(())),
            ("$.res", json!("text"), Err(())),
        ];
        for (text, target, expected) in cases {
            let got = Path::parse(text)
                .unwrap()
                .write(target, json!("r"))
                .map_err(|_| ());
            assert_eq!(got, expected, "{text}");
        }
    }

    #[test]
    fn templates_render_paths_context_and_intrinsics() {
        let input = json!({"name": "nyt", "n": 3, "doc": "{\"k\":1}", "o": {"a": 1, "b": 1}, "p": {"b": 2}});
        let ctx = json!({"State": {"RetryCount": 1}});
        let cases = [
            (
                json!({"plain": [1, {"x.$": "$.n"}]}),
                json!({"plain": [1, {"x": 3}]}),
            ),
            (json!({"r.$": "$$.State.RetryCount"}), json!({"r": 1})),
            (
                json!({"s.$": "States.Format('{} has {} \\{rows\\}', $.name, $.n)"}),
                json!({"s": "nyt has 3 {rows}"}),
            ),
            (
                json!({"s.$": "States.JsonToString($.o)"}),
                json!({"s": "{\"a\":1,\"b\":1}"}),
            ),
            (
                json!({"s.$": "States.StringToJson($.doc)"}),
                json!({"s": {"k": 1}}),
            ),
            (
                json!({"s.$": "States.JsonMerge($.o, $.p, false)"}),
                json!({"s": {"a": 1, "b": 2}}),
            ),
            (
                json!({"s.$": "States.Format('it\\'s {}', States.JsonToString($.p))"}),
                json!({"s": "it's {\"b\":2}"}),
            ),
        ];
        for (template, expected) in cases {
            let compiled =
                Template::compile(&template).unwrap_or_else(|e| panic!("{template}: {e}"));
            assert_eq!(
                compiled.render(&input, &ctx).unwrap(),
                expected,
                "{template}"
            );
        }
    }

    #[test]
    fn templates_refused_at_load() {
        for template in [
            json!({"a.$": "States.UUID()"}),
            json!({"a.$": "States.MathAdd($.n, 1)"}),
            json!({"a.$": "States.Format('{} {}', $.n)"}),
            json!({"a.$": "States.JsonMerge($.a, $.b, true)"}),
            json!({"a.$": 5}),
            json!({"a.$": "$.x[*]"}),
            json!({"a.$": "States.JsonToString($.a"}),
        ] {
            assert!(
                Template::compile(&template).is_err(),
                "{template} should be refused"
            );
        }
    }

    #[test]
    fn template_path_miss_is_an_error() {
        let template = Template::compile(&json!({"a.$": "$.missing"})).unwrap();
        assert!(template.render(&json!({}), &json!({})).is_err());
    }
}
