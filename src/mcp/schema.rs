//! Checking a tool call's arguments against the input schema the tool publishes.
//!
//! The schema a tool lists in `tools/list` is the one statement of what it accepts: every
//! call is checked against it here, before the tool reads its arguments, so this server
//! and a client that validates before sending agree on what is valid. Leniency a tool wants
//! is written into its schema, never into the code that reads the arguments.
//!
//! Only the subset of JSON Schema our tools publish is understood ([`KEYWORDS`]): `type` (a
//! name or a list of names), `properties`, `required`, `additionalProperties: false`,
//! `items`, `enum`, `minimum`, `maximum`, and `description`, which errors quote. A test of
//! the server keeps every published schema inside that subset.
//!
//! Trusts the schema (ours, written in code). Guarantees: arguments that pass match the
//! schema; a refusal is one sentence naming the argument, what the schema wants and what
//! came, which the agent can act on.

use std::fmt::Write as _;

use rmcp::model::{JsonObject, Tool};
use serde_json::Value;

/// The schema keywords the checker understands; a published schema uses no others.
pub(crate) const KEYWORDS: [&str; 9] = [
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "minimum",
    "maximum",
    "description",
];

/// Strings longer than this are not quoted back in an error.
const QUOTE_LIMIT: usize = 40;

/// Check the arguments of a call to `tool` (none given reads as `{}`) against its input
/// schema.
pub(crate) fn check_arguments(tool: &Tool, arguments: Option<&JsonObject>) -> Result<(), String> {
    let empty = JsonObject::new();
    check_object(
        &tool.name,
        &tool.input_schema,
        arguments.unwrap_or(&empty),
        "",
    )
}

/// Check an object's properties; `path` is empty for the arguments themselves.
fn check_object(
    tool: &str,
    schema: &JsonObject,
    object: &JsonObject,
    path: &str,
) -> Result<(), String> {
    debug_assert!(
        understood(schema),
        "a keyword outside the subset in {schema:?}"
    );
    let empty = JsonObject::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    if schema.get("additionalProperties") == Some(&Value::Bool(false))
        && let Some(unknown) = object.keys().find(|name| !properties.contains_key(*name))
    {
        let owner = if path.is_empty() {
            tool.to_string()
        } else {
            format!("`{path}`")
        };
        let takes = if properties.is_empty() {
            "no arguments".to_string()
        } else {
            properties
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(format!(
            "unknown argument `{}`; {owner} takes {takes}",
            child(path, unknown)
        ));
    }
    let required = |name: &str| {
        schema
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|names| names.iter().any(|n| n == name))
    };
    for (name, property) in properties {
        let at = child(path, name);
        match object.get(name) {
            None if required(name) => {
                return Err(format!(
                    "missing required argument `{at}` ({})",
                    wanted(property)
                ));
            }
            None => {}
            Some(value) => check_value(tool, property, value, &at).map_err(|message| {
                if value.is_null() && !required(name) {
                    format!("{message}; leave `{at}` out to get its default")
                } else {
                    message
                }
            })?,
        }
    }
    Ok(())
}

/// Check one value against its schema; `path` names it in errors.
fn check_value(tool: &str, schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    debug_assert!(
        schema.as_object().is_some_and(understood),
        "a keyword outside the subset in {schema}"
    );
    let types = type_names(schema);
    if !types.is_empty() && !types.iter().any(|name| has_type(value, name)) {
        let mut message = format!("`{path}` must be {}, got {}", wanted(schema), got(value));
        // A lone item where a list is wanted: say how to write the list.
        if !value.is_array()
            && types.contains(&"array")
            && let Some(items) = schema.get("items")
            && check_value(tool, items, value, path).is_ok()
        {
            let list = Value::Array(vec![value.clone()]).to_string();
            if list.len() <= QUOTE_LIMIT {
                let _ = write!(message, "; write {list}");
            }
        }
        return Err(message);
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!(
            "`{path}` must be {}, got {}",
            wanted(schema),
            got(value)
        ));
    }
    if let Some(number) = value.as_f64() {
        let bound =
            |keyword: &str, words: &str, outside: fn(f64, f64) -> bool| match schema.get(keyword) {
                Some(limit) if limit.as_f64().is_some_and(|l| outside(number, l)) => Err(format!(
                    "`{path}` must be {words} {limit}{}, got {value}",
                    described(schema)
                )),
                _ => Ok(()),
            };
        bound("minimum", "at least", |n, l| n < l)?;
        bound("maximum", "at most", |n, l| n > l)?;
    }
    match value {
        Value::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (index, value) in items.iter().enumerate() {
                    check_value(tool, item, value, &format!("{path}[{index}]"))?;
                }
            }
        }
        Value::Object(object) => {
            if let Value::Object(schema) = schema {
                check_object(tool, schema, object, path)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether a schema uses only the keywords the checker understands.
fn understood(schema: &JsonObject) -> bool {
    schema.keys().all(|key| KEYWORDS.contains(&key.as_str()))
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// The names under `type`, whether it is one name or a list.
fn type_names(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(name)) => vec![name.as_str()],
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether `value` is of JSON Schema type `name`; an integer is a number without a fraction.
fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|n| n.fract() == 0.0)
        }
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    }
}

/// What a schema asks for, as words: "a list of strings", "\"summary\" or \"full\"",
/// "a number (seconds)".
fn wanted(schema: &Value) -> String {
    let what = if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        either(allowed.iter().map(Value::to_string).collect())
    } else {
        either(
            type_names(schema)
                .into_iter()
                .map(|name| match name {
                    "array" => match schema.get("items").map(type_names).as_deref() {
                        Some([item]) => format!("a list of {}", plural(item)),
                        _ => "a list".to_string(),
                    },
                    other => a_type(other).to_string(),
                })
                .collect(),
        )
    };
    format!("{what}{}", described(schema))
}

/// ` (description)`, or nothing.
fn described(schema: &Value) -> String {
    schema
        .get("description")
        .and_then(Value::as_str)
        .map(|text| format!(" ({text})"))
        .unwrap_or_default()
}

fn either(mut words: Vec<String>) -> String {
    match words.len() {
        0 => "anything".to_string(),
        1 => words.remove(0),
        _ => {
            let last = words.pop().expect("two or more");
            format!("{} or {last}", words.join(", "))
        }
    }
}

fn a_type(name: &str) -> &str {
    match name {
        "boolean" => "true or false",
        "string" => "a string",
        "number" => "a number",
        "integer" => "an integer",
        "object" => "an object",
        "array" => "a list",
        "null" => "null",
        other => other,
    }
}

fn plural(name: &str) -> String {
    match name {
        "boolean" => "booleans".to_string(),
        "integer" => "integers".to_string(),
        "array" => "lists".to_string(),
        other => format!("{other}s"),
    }
}

/// What came, as words: `the string "30s"`, `the number 0.5`, `a list`.
fn got(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() <= QUOTE_LIMIT => format!("the string {value}"),
        Value::String(_) => "a string".to_string(),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tool(schema: Value) -> Tool {
        let Value::Object(schema) = schema else {
            unreachable!("schemas are objects")
        };
        Tool::new("t", "a tool", schema)
    }

    fn check(schema: Value, arguments: Value) -> Result<(), String> {
        let Value::Object(arguments) = arguments else {
            unreachable!("arguments are objects")
        };
        check_arguments(&tool(schema), Some(&arguments))
    }

    fn names() -> Value {
        json!({"type": "object", "properties": {
            "servers": {"type": "array", "items": {"type": "string"}}}})
    }

    #[test]
    fn a_lone_string_where_a_list_is_wanted_is_refused_with_the_list_to_write() {
        let error = check(names(), json!({"servers": "time"})).unwrap_err();
        assert_eq!(
            error,
            "`servers` must be a list of strings, got the string \"time\"; write [\"time\"]"
        );
    }

    #[test]
    fn a_wrong_item_is_named_by_its_index() {
        let error = check(names(), json!({"servers": ["time", 1]})).unwrap_err();
        assert_eq!(error, "`servers[1]` must be a string, got the number 1");
    }

    #[test]
    fn null_for_an_optional_argument_says_to_leave_it_out() {
        let error = check(names(), json!({"servers": null})).unwrap_err();
        assert_eq!(
            error,
            "`servers` must be a list of strings, got null; leave `servers` out to get its default"
        );
        let nullable =
            json!({"type": "object", "properties": {"n": {"type": ["integer", "null"]}}});
        assert_eq!(check(nullable.clone(), json!({"n": null})), Ok(()));
        assert_eq!(
            check(nullable, json!({"n": "1"})).unwrap_err(),
            "`n` must be an integer or null, got the string \"1\""
        );
    }

    #[test]
    fn bounds_quote_the_limit_and_the_description() {
        let schema = json!({"type": "object", "properties": {
            "timeout": {"type": "number", "minimum": 1, "maximum": 20, "description": "seconds"}}});
        assert_eq!(check(schema.clone(), json!({"timeout": 2.5})), Ok(()));
        assert_eq!(
            check(schema.clone(), json!({"timeout": 0.5})).unwrap_err(),
            "`timeout` must be at least 1 (seconds), got 0.5"
        );
        assert_eq!(
            check(schema.clone(), json!({"timeout": 21})).unwrap_err(),
            "`timeout` must be at most 20 (seconds), got 21"
        );
        assert_eq!(
            check(schema, json!({"timeout": "30s"})).unwrap_err(),
            "`timeout` must be a number (seconds), got the string \"30s\""
        );
    }

    #[test]
    fn an_integer_is_a_number_without_a_fraction() {
        let schema = json!({"type": "object", "properties": {"limit": {"type": "integer"}}});
        assert_eq!(check(schema.clone(), json!({"limit": 3})), Ok(()));
        assert_eq!(check(schema.clone(), json!({"limit": 3.0})), Ok(()));
        assert_eq!(
            check(schema, json!({"limit": 2.5})).unwrap_err(),
            "`limit` must be an integer, got the number 2.5"
        );
    }

    #[test]
    fn an_enum_lists_its_values() {
        let schema = json!({"type": "object", "properties": {
            "detail": {"type": "string", "enum": ["summary", "full"]}}});
        assert_eq!(check(schema.clone(), json!({"detail": "full"})), Ok(()));
        assert_eq!(
            check(schema, json!({"detail": "all"})).unwrap_err(),
            "`detail` must be \"summary\" or \"full\", got the string \"all\""
        );
    }

    #[test]
    fn unknown_and_missing_arguments_are_named() {
        let schema = json!({"type": "object", "properties": {"code": {"type": "string"},
            "reset": {"type": "boolean"}}, "required": ["code"], "additionalProperties": false});
        assert_eq!(
            check(schema.clone(), json!({"cod": "x"})).unwrap_err(),
            "unknown argument `cod`; t takes code, reset"
        );
        assert_eq!(
            check(schema.clone(), json!({})).unwrap_err(),
            "missing required argument `code` (a string)"
        );
        assert_eq!(
            check(schema.clone(), json!({"code": "x", "reset": "yes"})).unwrap_err(),
            "`reset` must be true or false, got the string \"yes\""
        );
        assert_eq!(
            check_arguments(&tool(schema), None).unwrap_err(),
            "missing required argument `code` (a string)"
        );
        let none = json!({"type": "object", "properties": {}, "additionalProperties": false});
        assert_eq!(
            check(none, json!({"x": 1})).unwrap_err(),
            "unknown argument `x`; t takes no arguments"
        );
    }

    #[test]
    fn long_strings_are_not_quoted_back() {
        let schema = json!({"type": "object", "properties": {"n": {"type": "number"}}});
        let long = "x".repeat(QUOTE_LIMIT + 1);
        assert_eq!(
            check(schema, json!({"n": long})).unwrap_err(),
            "`n` must be a number, got a string"
        );
    }

    #[test]
    fn nested_objects_are_checked_with_a_dotted_path() {
        let schema = json!({"type": "object", "properties": {"o": {"type": "object",
            "properties": {"k": {"type": "string"}}, "required": ["k"],
            "additionalProperties": false}}});
        assert_eq!(check(schema.clone(), json!({"o": {"k": "v"}})), Ok(()));
        assert_eq!(
            check(schema.clone(), json!({"o": {}})).unwrap_err(),
            "missing required argument `o.k` (a string)"
        );
        assert_eq!(
            check(schema, json!({"o": {"k": "v", "z": 1}})).unwrap_err(),
            "unknown argument `o.z`; `o` takes k"
        );
    }
}
