//! A small subset of JSON Schema, enough for Spaces whose answers must be structured:
//! `type`, `properties`, `required`, `additionalProperties` (boolean), `items`,
//! `minItems`/`maxItems`, `enum`, `minimum`/`maximum` and `minLength`/`maxLength`.
//! Unknown keywords are rejected when the Space loads, so a typo never silently
//! weakens a check.

use std::collections::BTreeMap;

use serde_json::Value;

/// A JSON type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonType {
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
    /// A string.
    String,
    /// Any number.
    Number,
    /// A number with no fractional part.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// `null`.
    Null,
}

impl JsonType {
    fn parse(name: &str) -> Option<JsonType> {
        Some(match name {
            "object" => JsonType::Object,
            "array" => JsonType::Array,
            "string" => JsonType::String,
            "number" => JsonType::Number,
            "integer" => JsonType::Integer,
            "boolean" => JsonType::Boolean,
            "null" => JsonType::Null,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            JsonType::Object => "object",
            JsonType::Array => "array",
            JsonType::String => "string",
            JsonType::Number => "number",
            JsonType::Integer => "integer",
            JsonType::Boolean => "boolean",
            JsonType::Null => "null",
        }
    }

    fn matches(self, value: &Value) -> bool {
        match self {
            JsonType::Object => value.is_object(),
            JsonType::Array => value.is_array(),
            JsonType::String => value.is_string(),
            JsonType::Number => value.is_number(),
            JsonType::Integer => {
                value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            JsonType::Boolean => value.is_boolean(),
            JsonType::Null => value.is_null(),
        }
    }
}

fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A compiled schema node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schema {
    ty: Option<JsonType>,
    properties: BTreeMap<String, Schema>,
    required: Vec<String>,
    additional_properties: bool,
    items: Option<Box<Schema>>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    enumeration: Option<Vec<Value>>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    min_length: Option<usize>,
    max_length: Option<usize>,
}

fn count(value: &Value, key: &str) -> Result<usize, (String, String)> {
    value.as_u64().map(|v| v as usize).ok_or_else(|| {
        (
            key.to_owned(),
            format!("{value} is not a non-negative integer"),
        )
    })
}

fn number(value: &Value, key: &str) -> Result<f64, (String, String)> {
    value
        .as_f64()
        .ok_or_else(|| (key.to_owned(), format!("{value} is not a number")))
}

impl Schema {
    /// Compiles a schema. On error, returns the dotted path inside the schema (starting
    /// with `path`) and the problem.
    pub(crate) fn compile(value: &Value, path: &str) -> Result<Schema, (String, String)> {
        let object = value
            .as_object()
            .ok_or_else(|| (path.to_owned(), "a schema must be a JSON object".to_owned()))?;
        let mut schema = Schema {
            additional_properties: true,
            ..Schema::default()
        };
        for (key, v) in object {
            let at = format!("{path}.{key}");
            match key.as_str() {
                "type" => {
                    let name = v.as_str().unwrap_or_default();
                    schema.ty = Some(
                        JsonType::parse(name)
                            .ok_or_else(|| (at.clone(), format!("{v} is not a JSON type name")))?,
                    );
                }
                "properties" => {
                    let props = v
                        .as_object()
                        .ok_or_else(|| (at.clone(), "must be an object".to_owned()))?;
                    for (name, sub) in props {
                        let sub = Schema::compile(sub, &format!("{at}.{name}"))?;
                        schema.properties.insert(name.clone(), sub);
                    }
                }
                "required" => {
                    let names = v
                        .as_array()
                        .ok_or_else(|| (at.clone(), "must be a list of names".to_owned()))?;
                    for name in names {
                        let name = name
                            .as_str()
                            .ok_or_else(|| (at.clone(), format!("{name} is not a name")))?;
                        schema.required.push(name.to_owned());
                    }
                }
                "additionalProperties" => {
                    schema.additional_properties = v.as_bool().ok_or_else(|| {
                        (at.clone(), "only true or false is supported".to_owned())
                    })?;
                }
                "items" => schema.items = Some(Box::new(Schema::compile(v, &at)?)),
                "minItems" => schema.min_items = Some(count(v, &at)?),
                "maxItems" => schema.max_items = Some(count(v, &at)?),
                "minLength" => schema.min_length = Some(count(v, &at)?),
                "maxLength" => schema.max_length = Some(count(v, &at)?),
                "minimum" => schema.minimum = Some(number(v, &at)?),
                "maximum" => schema.maximum = Some(number(v, &at)?),
                "enum" => {
                    let values = v
                        .as_array()
                        .filter(|a| !a.is_empty())
                        .ok_or_else(|| (at.clone(), "must be a non-empty list".to_owned()))?;
                    schema.enumeration = Some(values.clone());
                }
                "$schema" | "title" | "description" => {}
                _ => return Err((at, "unknown schema keyword".to_owned())),
            }
        }
        for name in &schema.required {
            if !schema.additional_properties && !schema.properties.contains_key(name) {
                return Err((
                    format!("{path}.required"),
                    format!(
                        "{name} is required but additionalProperties is false and it has no schema"
                    ),
                ));
            }
        }
        Ok(schema)
    }

    /// Checks a value; on failure, says where (`$.items[2].age`) and why.
    pub(crate) fn validate(&self, value: &Value) -> Result<(), String> {
        self.check(value, "$")
    }

    /// The share of this schema's checks a value passes, in [0, 1]: 1 exactly when
    /// [`Schema::validate`] accepts it. A wrong type or a value outside an enum earns
    /// nothing; an object earns the mean over its required keys (0 when missing), its
    /// keys with a schema (their own credit) and its unexpected keys (0); a list, the
    /// mean of its items (halved when it has too few or too many); a string or number
    /// outside its bounds, half.
    pub(crate) fn credit(&self, value: &Value) -> f64 {
        if self.ty.is_some_and(|ty| !ty.matches(value))
            || self
                .enumeration
                .as_ref()
                .is_some_and(|options| !options.contains(value))
        {
            return 0.0;
        }
        let mean = |parts: &[f64]| {
            if parts.is_empty() {
                1.0
            } else {
                parts.iter().sum::<f64>() / parts.len() as f64
            }
        };
        match value {
            Value::Object(map) => {
                let mut parts: Vec<f64> = self
                    .required
                    .iter()
                    .filter(|name| !map.contains_key(*name))
                    .map(|_| 0.0)
                    .collect();
                for (key, v) in map {
                    match self.properties.get(key) {
                        Some(sub) => parts.push(sub.credit(v)),
                        None if !self.additional_properties => parts.push(0.0),
                        None => {}
                    }
                }
                mean(&parts)
            }
            Value::Array(items) => {
                let counted = self.min_items.is_none_or(|min| items.len() >= min)
                    && self.max_items.is_none_or(|max| items.len() <= max);
                let each: Vec<f64> = match &self.items {
                    Some(sub) => items.iter().map(|i| sub.credit(i)).collect(),
                    None => Vec::new(),
                };
                mean(&each) * if counted { 1.0 } else { 0.5 }
            }
            Value::String(s) => {
                let len = s.chars().count();
                let within = self.min_length.is_none_or(|min| len >= min)
                    && self.max_length.is_none_or(|max| len <= max);
                if within { 1.0 } else { 0.5 }
            }
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(0.0);
                let within = self.minimum.is_none_or(|min| f >= min)
                    && self.maximum.is_none_or(|max| f <= max);
                if within { 1.0 } else { 0.5 }
            }
            Value::Null | Value::Bool(_) => 1.0,
        }
    }

    fn check(&self, value: &Value, at: &str) -> Result<(), String> {
        if let Some(ty) = self.ty
            && !ty.matches(value)
        {
            return Err(format!(
                "{at}: expected {}, got {}",
                ty.name(),
                type_of(value)
            ));
        }
        if let Some(options) = &self.enumeration
            && !options.contains(value)
        {
            return Err(format!("{at}: {value} is not one of the allowed values"));
        }
        match value {
            Value::Object(map) => {
                for name in &self.required {
                    if !map.contains_key(name) {
                        return Err(format!("{at}: missing required key \"{name}\""));
                    }
                }
                for (key, v) in map {
                    match self.properties.get(key) {
                        Some(sub) => sub.check(v, &format!("{at}.{key}"))?,
                        None if !self.additional_properties => {
                            return Err(format!("{at}: unexpected key \"{key}\""));
                        }
                        None => {}
                    }
                }
            }
            Value::Array(items) => {
                if let Some(min) = self.min_items
                    && items.len() < min
                {
                    return Err(format!(
                        "{at}: {} items, at least {min} expected",
                        items.len()
                    ));
                }
                if let Some(max) = self.max_items
                    && items.len() > max
                {
                    return Err(format!(
                        "{at}: {} items, at most {max} expected",
                        items.len()
                    ));
                }
                if let Some(sub) = &self.items {
                    for (i, item) in items.iter().enumerate() {
                        sub.check(item, &format!("{at}[{i}]"))?;
                    }
                }
            }
            Value::String(s) => {
                let len = s.chars().count();
                if self.min_length.is_some_and(|min| len < min) {
                    return Err(format!("{at}: string is too short ({len} characters)"));
                }
                if self.max_length.is_some_and(|max| len > max) {
                    return Err(format!("{at}: string is too long ({len} characters)"));
                }
            }
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(0.0);
                if self.minimum.is_some_and(|min| f < min) {
                    return Err(format!("{at}: {n} is below the minimum"));
                }
                if self.maximum.is_some_and(|max| f > max) {
                    return Err(format!("{at}: {n} is above the maximum"));
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
        Ok(())
    }
}

/// Extracts the JSON value of a response: surrounding whitespace and one Markdown code
/// fence (```` ```json ````) are allowed, anything else around the JSON is not.
pub(crate) fn parse_response_json(response: &str) -> Result<Value, String> {
    let mut text = response.trim();
    if let Some(rest) = text.strip_prefix("```") {
        let body = rest.split_once('\n').map(|(_, body)| body).unwrap_or("");
        text = body.trim_end().strip_suffix("```").unwrap_or(body).trim();
    }
    serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn person() -> Schema {
        Schema::compile(
            &json!({
                "type": "object",
                "required": ["name", "age"],
                "additionalProperties": false,
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "age": {"type": "integer", "minimum": 0, "maximum": 130},
                    "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}
                }
            }),
            "schema",
        )
        .unwrap()
    }

    #[test]
    fn accepts_valid_and_explains_invalid() {
        let s = person();
        assert_eq!(
            s.validate(&json!({"name": "Ana", "age": 30, "tags": ["a"]})),
            Ok(())
        );
        assert_eq!(
            s.validate(&json!({"name": "Ana"})),
            Err("$: missing required key \"age\"".into())
        );
        assert_eq!(
            s.validate(&json!({"name": "Ana", "age": "30"})),
            Err("$.age: expected integer, got string".into())
        );
        assert!(s.validate(&json!({"name": "Ana", "age": 30.5})).is_err());
        assert!(s.validate(&json!({"name": "Ana", "age": 300})).is_err());
        assert!(s.validate(&json!({"name": "", "age": 3})).is_err());
        assert!(s.validate(&json!({"name": "A", "age": 3, "x": 1})).is_err());
        assert_eq!(
            s.validate(&json!({"name": "A", "age": 3, "tags": ["a", "c"]})),
            Err("$.tags[1]: \"c\" is not one of the allowed values".into())
        );
        assert!(
            s.validate(&json!({"name": "A", "age": 3, "tags": ["a", "a", "b"]}))
                .is_err()
        );
        assert!(s.validate(&json!([1])).is_err());
    }

    #[test]
    fn full_credit_exactly_when_valid() {
        let s = person();
        let values = [
            json!({"name": "Ana", "age": 30, "tags": ["a"]}),
            json!({"name": "Ana"}),
            json!({"name": "Ana", "age": "30"}),
            json!({"name": "Ana", "age": 30.5}),
            json!({"name": "Ana", "age": 300}),
            json!({"name": "", "age": 3}),
            json!({"name": "A", "age": 3, "x": 1}),
            json!({"name": "A", "age": 3, "tags": ["a", "c"]}),
            json!({"name": "A", "age": 3, "tags": ["a", "a", "b"]}),
            json!([1]),
            json!(null),
        ];
        for v in &values {
            let credit = s.credit(v);
            assert!((0.0..=1.0).contains(&credit), "{v}: {credit}");
            assert_eq!(credit == 1.0, s.validate(v).is_ok(), "{v}: {credit}");
        }
        // Closer answers earn more.
        assert!(
            s.credit(&json!({"name": "Ana", "age": "30"}))
                > s.credit(&json!({"name": 1, "age": "30"}))
        );
    }

    #[test]
    fn rejects_unknown_keywords_with_their_path() {
        let err = Schema::compile(
            &json!({"type": "object", "properties": {"a": {"type": "strin"}}}),
            "rules[0].schema",
        )
        .unwrap_err();
        assert_eq!(err.0, "rules[0].schema.properties.a.type");
        let err = Schema::compile(&json!({"pattern": "x"}), "s").unwrap_err();
        assert_eq!(
            err,
            ("s.pattern".to_owned(), "unknown schema keyword".to_owned())
        );
    }

    #[test]
    fn response_json_allows_a_code_fence_only() {
        assert_eq!(parse_response_json(" {\"a\": 1} \n"), Ok(json!({"a": 1})));
        assert_eq!(
            parse_response_json("```json\n{\"a\": 1}\n```"),
            Ok(json!({"a": 1}))
        );
        assert!(parse_response_json("Here it is: {\"a\": 1}").is_err());
        assert!(parse_response_json("{\"a\": 1} thanks").is_err());
    }
}
