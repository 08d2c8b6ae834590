//! Templates: `spec.template.data` renders Secret values from the item with MiniJinja
//! (Jinja syntax), pure like [`super::build`], which calls it.
//!
//! The engine is sandboxed: no loader (so no `include` or `import`), no file or network
//! access, a fuel limit on the work one template may do and a low recursion limit. An
//! undefined name is an error, not an empty string, so a typo never writes a blank value.
//! Error messages name the key and the line and never carry a value of the item.
//!
//! The context: `item`, the main item (absent without `itemPath`), and `items.<name>`, each
//! entry of `items`. Each item is every key of the usual mapping (`item.password`,
//! `item["first-host"]`), and the lists `fields`, `sections`, `files` and `urls` with labels,
//! ids and sections (the lists win over keys of the same name).

mod helpers;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

use super::build::{ItemData, MappingOptions, build_data};

/// Instructions one template may run: far more than any Secret needs, far less than a loop
/// that would stall the controller.
const FUEL: u64 = 100_000;
const RECURSION_LIMIT: usize = 32;

/// Why a template made no value. Names the key, the line and what went wrong; never a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("template.data[{key:?}]{}: {what}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
pub(crate) struct TemplateError {
    pub key: String,
    pub line: Option<usize>,
    pub what: String,
}

static ENGINE: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    helpers::register(&mut env);
    env
});

/// An item with the bytes of its files (by file id).
pub(crate) type ItemWithFiles<'a> = (&'a ItemData, &'a BTreeMap<String, Vec<u8>>);
/// An entry of `items`: its name and its item.
pub(crate) type NamedItem<'a> = (&'a str, ItemWithFiles<'a>);

/// Renders every template of `templates` (Secret key → template) against the main item
/// (`item`) and the named ones (`items.<name>`).
pub(crate) fn render(
    templates: &BTreeMap<String, String>,
    main: Option<ItemWithFiles<'_>>,
    named: &[NamedItem<'_>],
    options: MappingOptions,
) -> Result<BTreeMap<String, Vec<u8>>, TemplateError> {
    let mut context = BTreeMap::new();
    if let Some((item, files)) = main {
        context.insert("item".to_string(), item_context(item, files, options));
    }
    let items: BTreeMap<String, Value> = named
        .iter()
        .map(|(name, (item, files))| (name.to_string(), item_context(item, files, options)))
        .collect();
    context.insert("items".to_string(), Value::from(items));
    let context = Value::from(context);
    let all: Vec<ItemWithFiles<'_>> = main.into_iter().chain(named.iter().map(|(_, item)| *item)).collect();
    templates
        .iter()
        .map(|(key, source)| {
            let rendered = ENGINE
                .render_str(source, context.clone())
                .map_err(|error| template_error(key, &error, &all))?;
            Ok((key.clone(), rendered.into_bytes()))
        })
        .collect()
}

/// Text as a string, anything else as bytes.
fn text_or_bytes(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::from(text),
        Err(_) => Value::from_bytes(bytes.to_vec()),
    }
}

fn object(entries: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::from(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<String, Value>>(),
    )
}

/// `item`: the mapped keys, then the lists, which win over keys of the same name.
fn item_context(item: &ItemData, files: &BTreeMap<String, Vec<u8>>, options: MappingOptions) -> Value {
    let mut context: BTreeMap<String, Value> = build_data(item, files, options)
        .data
        .iter()
        .map(|(key, value)| (key.clone(), text_or_bytes(value)))
        .collect();
    let section_label = |id: &str| {
        item.sections
            .iter()
            .find(|s| &*s.id == id)
            .map(|s| &*s.label)
            .unwrap_or_default()
    };
    let section = |id: Option<&str>| match id {
        Some(id) => object([("id", Value::from(id)), ("label", Value::from(section_label(id)))]),
        None => Value::from(()),
    };
    let fields = item.fields.iter().map(|f| {
        object([
            ("id", Value::from(&*f.id)),
            ("label", Value::from(&*f.label)),
            ("section", section(f.section.as_deref())),
            ("value", Value::from(&*f.value)),
        ])
    });
    context.insert("fields".into(), Value::from_iter(fields));
    let sections = item
        .sections
        .iter()
        .map(|s| object([("id", Value::from(&*s.id)), ("label", Value::from(&*s.label))]));
    context.insert("sections".into(), Value::from_iter(sections));
    let file_values = item.files.iter().map(|f| {
        let content = files.get(&*f.id).map_or(Value::from(()), |bytes| text_or_bytes(bytes));
        object([
            ("id", Value::from(&*f.id)),
            ("name", Value::from(&*f.name)),
            ("content", content),
        ])
    });
    context.insert("files".into(), Value::from_iter(file_values));
    let urls = item.urls.iter().map(|u| {
        object([
            ("label", Value::from(&*u.label)),
            ("href", Value::from(&*u.href)),
            ("primary", Value::from(u.primary)),
        ])
    });
    context.insert("urls".into(), Value::from_iter(urls));
    Value::from(context)
}

/// Kinds whose detail is about the template's text, never about a value.
fn detail_is_about_the_template(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::SyntaxError
            | ErrorKind::UnknownFilter
            | ErrorKind::UnknownFunction
            | ErrorKind::UnknownTest
            | ErrorKind::UnknownMethod
            | ErrorKind::TooManyArguments
            | ErrorKind::MissingArgument
            | ErrorKind::TemplateNotFound
            | ErrorKind::BadEscape
    )
}

/// The engine's error without anything of the item: the detail is kept only when it speaks
/// of the template (or comes from one of our helpers, whose messages carry no values), and
/// any value of the item found in it all the same is masked.
fn template_error(key: &str, error: &minijinja::Error, items: &[ItemWithFiles<'_>]) -> TemplateError {
    let kind = error.kind();
    let detail = error
        .detail()
        .filter(|d| detail_is_about_the_template(kind) || helpers::is_helper_message(d));
    let what = match detail {
        Some(detail) => format!("{kind}: {}", mask_values(detail, items)),
        None if kind == ErrorKind::UndefinedError => {
            "undefined value: the template names something the item does not have (a key, or an attribute of a list entry)".into()
        }
        None if kind == ErrorKind::OutOfFuel => {
            "the template does too much work (it ran out of fuel); simplify its loops".into()
        }
        None => kind.to_string(),
    };
    TemplateError {
        key: key.to_owned(),
        line: error.line(),
        what,
    }
}

/// Replaces every value of the items of three or more bytes found in `text`.
fn mask_values(text: &str, items: &[ItemWithFiles<'_>]) -> String {
    let values = items
        .iter()
        .flat_map(|(item, files)| {
            item.fields
                .iter()
                .map(|f| f.value.as_bytes())
                .chain(item.urls.iter().map(|u| u.href.as_bytes()))
                .chain(files.values().map(Vec::as_slice))
        })
        .filter_map(|v| std::str::from_utf8(v).ok())
        .filter(|v| v.len() >= 3);
    let mut masked = text.to_owned();
    for value in values {
        masked = masked.replace(value, "<redacted>");
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::build::{FieldData, FileData, SectionData, UrlData};

    fn item() -> ItemData {
        ItemData {
            id: "item".into(),
            version: 1,
            sections: vec![SectionData {
                id: "conn".into(),
                label: "Connection".into(),
            }]
            .into(),
            fields: vec![
                FieldData {
                    id: "username".into(),
                    label: "username".into(),
                    section: None,
                    value: "app".into(),
                },
                FieldData {
                    id: "password".into(),
                    label: "password".into(),
                    section: None,
                    value: "p@ss/w:rd".into(),
                },
                FieldData {
                    id: "h1".into(),
                    label: "first host".into(),
                    section: Some("conn".into()),
                    value: "db.internal".into(),
                },
            ]
            .into(),
            files: vec![FileData {
                id: "f1".into(),
                name: "ca.pem".into(),
            }]
            .into(),
            urls: vec![UrlData {
                label: "website".into(),
                href: "https://example.com".into(),
                primary: true,
            }]
            .into(),
            ..ItemData::default()
        }
    }

    fn files() -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([("f1".to_string(), b"CERT".to_vec())])
    }

    fn one(template: &str) -> Result<String, TemplateError> {
        let templates = BTreeMap::from([("K".to_string(), template.to_string())]);
        let (item, files) = (item(), files());
        let rendered = render(&templates, Some((&item, &files)), &[], MappingOptions::default())?;
        Ok(String::from_utf8(rendered["K"].clone()).unwrap())
    }

    #[test]
    fn keys_of_the_usual_mapping_are_there() {
        assert_eq!(
            one("{{ item.username }}:{{ item['first-host'] }}").unwrap(),
            "app:db.internal"
        );
        assert_eq!(
            one("{{ item['ca.pem'] }} {{ item.website }}").unwrap(),
            "CERT https://example.com"
        );
    }

    #[test]
    fn the_lists_carry_labels_ids_and_sections() {
        let template = "{% for f in item.fields if f.section and f.section.label == 'Connection' %}{{ f.id }}={{ f.value }}{% endfor %}";
        assert_eq!(one(template).unwrap(), "h1=db.internal");
        assert_eq!(
            one("{{ item.files[0].name }}:{{ item.files[0].content }}").unwrap(),
            "ca.pem:CERT"
        );
        assert_eq!(
            one("{{ item.sections | map(attribute='label') | join(',') }}").unwrap(),
            "Connection"
        );
        assert_eq!(
            one("{{ item.urls[0].href }} {{ item.urls[0].primary }}").unwrap(),
            "https://example.com True"
        );
    }

    #[test]
    fn a_database_url_with_an_encoded_password() {
        assert_eq!(
            one("postgres://{{ item.username }}:{{ item.password | urlencode }}@{{ item['first-host'] }}/app").unwrap(),
            "postgres://app:p%40ss%2Fw%3Ard@db.internal/app"
        );
    }

    #[test]
    fn an_undefined_name_is_an_error_not_a_blank() {
        let err = one("{{ item.passwrod }}").unwrap_err();
        assert_eq!(err.key, "K");
        assert_eq!(err.line, Some(1));
        assert!(err.what.starts_with("undefined value"), "{err}");
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = one("a\n{{ item.username ").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.what.starts_with("syntax error"), "{err}");
        assert!(
            err.to_string()
                .starts_with("template.data[\"K\"], line 2: syntax error"),
            "{err}"
        );
    }

    #[test]
    fn nothing_outside_the_item_is_reachable() {
        let err = one("{% include 'x' %}").unwrap_err();
        assert!(err.what.contains("include"), "{err}");
        assert!(one("{{ env }}").is_err(), "no environment variables");
    }

    #[test]
    fn endless_work_runs_out_of_fuel() {
        let err = one("{% for a in range(1000) %}{% for b in range(1000) %}x{% endfor %}{% endfor %}").unwrap_err();
        assert!(err.what.contains("out of fuel"), "{err}");
    }

    #[test]
    fn messages_never_hold_values() {
        for template in [
            "{{ item.password | int }}",
            "{{ item.password + 1 }}",
            "{{ item.password | b64decode }}",
            "{{ item.password | openssh }}",
            "{{ item.password.nope }}",
            "{{ item.password() }}",
        ] {
            let err = one(template).unwrap_err().to_string();
            for value in ["p@ss/w:rd", "p@ss", "db.internal"] {
                assert!(!err.contains(value), "{template}: {err}");
            }
        }
    }

    #[test]
    fn named_items_are_there_and_the_main_one_only_when_given() {
        let templates = BTreeMap::from([("K".to_string(), "{{ items.db.username }}".to_string())]);
        let (db, files) = (item(), files());
        let rendered = render(&templates, None, &[("db", (&db, &files))], MappingOptions::default()).unwrap();
        assert_eq!(rendered["K"], b"app");
        let templates = BTreeMap::from([("K".to_string(), "{{ item.username }}".to_string())]);
        let err = render(&templates, None, &[("db", (&db, &files))], MappingOptions::default()).unwrap_err();
        assert!(err.what.starts_with("undefined value"), "{err}");
    }

    #[test]
    fn values_in_details_are_masked() {
        let (item, files) = (item(), files());
        let masked = mask_values("bad value p@ss/w:rd here", &[(&item, &files)]);
        assert_eq!(masked, "bad value <redacted> here");
    }
}
