//! Select: the Secret data `spec.fields` asks for, each key from exactly one field, file or
//! URL of the item. Pure, like [`super::build`], which calls it.
//!
//! An explicit request is never guessed at: an entry that matches nothing, or more than one
//! value, is an error naming the entry, and the Secret is left as it was. Ids win over
//! labels (an id is unique in an item, a label need not be). A selected value is written
//! even when it is empty: the user asked for that key.

use std::collections::BTreeMap;

use super::build::{FieldData, ItemData, SectionData};
use crate::crd::SecretField;

/// Why an entry of `spec.fields` picks no value. Names labels and ids, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SelectError {
    #[error("{}fields entry {entry}: {detail}", in_item(item))]
    NotFound {
        /// The entry of `items` whose `fields` this is; `None` for `spec.fields`.
        item: Option<String>,
        entry: String,
        detail: String,
    },
    #[error("{}fields entry {entry}: {detail}", in_item(item))]
    Ambiguous {
        item: Option<String>,
        entry: String,
        detail: String,
    },
}

fn in_item(item: &Option<String>) -> String {
    item.as_ref().map(|name| format!("items[{name}]: ")).unwrap_or_default()
}

impl SelectError {
    /// The same error, for the `fields` of the entry `name` of `items`.
    pub(crate) fn in_item(self, name: &str) -> Self {
        match self {
            Self::NotFound { entry, detail, .. } => Self::NotFound {
                item: Some(name.to_owned()),
                entry,
                detail,
            },
            Self::Ambiguous { entry, detail, .. } => Self::Ambiguous {
                item: Some(name.to_owned()),
                entry,
                detail,
            },
        }
    }
}

/// The Secret data of `fields`, from the item and its file bytes (by file id).
pub(crate) fn select(
    item: &ItemData,
    files: &BTreeMap<String, Vec<u8>>,
    fields: &[SecretField],
) -> Result<BTreeMap<String, Vec<u8>>, SelectError> {
    fields
        .iter()
        .map(|entry| Ok((entry.key.clone(), value_of(item, files, entry)?)))
        .collect()
}

fn value_of(item: &ItemData, files: &BTreeMap<String, Vec<u8>>, entry: &SecretField) -> Result<Vec<u8>, SelectError> {
    let not_found = |detail: String| SelectError::NotFound {
        item: None,
        entry: entry.describe(),
        detail,
    };
    let ambiguous = |detail: String| SelectError::Ambiguous {
        item: None,
        entry: entry.describe(),
        detail,
    };
    if let Some(wanted) = &entry.field {
        let section = match &entry.section {
            Some(section) => Some(find_section(&item.sections, section).map_err(|count| match count {
                0 => not_found(format!("the item has no section with id or label {section:?}")),
                n => ambiguous(format!(
                    "{n} sections of the item have the label {section:?}; name it by id"
                )),
            })?),
            None => None,
        };
        let in_scope: Vec<&FieldData> = item
            .fields
            .iter()
            .filter(|f| section.is_none_or(|s| f.section.as_deref() == Some(&*s.id)))
            .collect();
        let field = one_by_id_or_label(&in_scope, wanted, |f| &f.id, |f| &f.label).map_err(|matched| {
            let scope = if section.is_some() { "that section" } else { "the item" };
            if matched.is_empty() {
                not_found(format!("no field of {scope} has that id or label"))
            } else {
                let ids: Vec<&str> = matched.iter().map(|f| &*f.id).collect();
                ambiguous(format!(
                    "{} fields of {scope} have that label (ids {}); name the field by id, or add a section",
                    matched.len(),
                    ids.join(", ")
                ))
            }
        })?;
        return Ok(field.value.as_bytes().to_vec());
    }
    if let Some(wanted) = &entry.file {
        let all: Vec<_> = item.files.iter().collect();
        let file = one_by_id_or_label(&all, wanted, |f| &f.id, |f| &f.name).map_err(|matched| {
            if matched.is_empty() {
                not_found("no file of the item has that id or name".into())
            } else {
                let ids: Vec<&str> = matched.iter().map(|f| &*f.id).collect();
                ambiguous(format!(
                    "{} files of the item have that name (ids {}); name the file by id",
                    matched.len(),
                    ids.join(", ")
                ))
            }
        })?;
        return files
            .get(&*file.id)
            .cloned()
            .ok_or_else(|| not_found("the file's content could not be read".into()));
    }
    if let Some(wanted) = &entry.url {
        let matched: Vec<_> = item.urls.iter().filter(|u| *u.label == **wanted).collect();
        return match matched[..] {
            [url] => Ok(url.href.as_bytes().to_vec()),
            [] => Err(not_found("no URL of the item has that label".into())),
            _ => Err(ambiguous(format!("{} URLs of the item have that label", matched.len()))),
        };
    }
    // The CRD's validation requires one source; an object stored before it still gets a message.
    Err(not_found("it names no field, file or url".into()))
}

/// The one element whose id is `wanted`, else the one whose label is; `Err` with every
/// match (none, or several) otherwise.
fn one_by_id_or_label<'a, T>(
    candidates: &[&'a T],
    wanted: &str,
    id: impl Fn(&T) -> &str,
    label: impl Fn(&T) -> &str,
) -> Result<&'a T, Vec<&'a T>> {
    for key in [&id as &dyn Fn(&T) -> &str, &label] {
        let matched: Vec<&T> = candidates.iter().copied().filter(|c| key(c) == wanted).collect();
        match matched.len() {
            0 => continue,
            1 => return Ok(matched[0]),
            _ => return Err(matched),
        }
    }
    Err(Vec::new())
}

/// The section with id `wanted`, else the one labelled so; `Err` with the number of matches.
fn find_section<'a>(sections: &'a [SectionData], wanted: &str) -> Result<&'a SectionData, usize> {
    let all: Vec<&SectionData> = sections.iter().collect();
    one_by_id_or_label(&all, wanted, |s| &s.id, |s| &s.label).map_err(|matched| matched.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::build::{FileData, UrlData};

    fn field(id: &str, label: &str, section: Option<&str>, value: &str) -> FieldData {
        FieldData {
            id: id.into(),
            label: label.into(),
            section: section.map(Into::into),
            value: value.into(),
        }
    }

    fn section(id: &str, label: &str) -> SectionData {
        SectionData {
            id: id.into(),
            label: label.into(),
        }
    }

    fn item() -> ItemData {
        ItemData {
            id: "item".into(),
            version: 3,
            sections: vec![section("s-prod", "Production"), section("s-stage", "Staging")].into(),
            fields: vec![
                field("username", "username", None, "admin"),
                field("password", "password", None, "pw"),
                field("p1", "host", Some("s-prod"), "db.prod"),
                field("s1", "host", Some("s-stage"), "db.stage"),
                field("empty", "note", None, ""),
                field("password2", "password", Some("s-prod"), "prod-pw"),
            ]
            .into(),
            files: vec![
                FileData {
                    id: "f1".into(),
                    name: "ca.pem".into(),
                },
                FileData {
                    id: "f2".into(),
                    name: "dup.txt".into(),
                },
                FileData {
                    id: "f3".into(),
                    name: "dup.txt".into(),
                },
            ]
            .into(),
            urls: vec![
                UrlData {
                    label: "console".into(),
                    href: "https://console".into(),
                    primary: true,
                },
                UrlData {
                    label: "docs".into(),
                    href: "https://a".into(),
                    primary: false,
                },
                UrlData {
                    label: "docs".into(),
                    href: "https://b".into(),
                    primary: false,
                },
            ]
            .into(),
            ..ItemData::default()
        }
    }

    fn files() -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            ("f1".to_string(), b"-----BEGIN CERTIFICATE-----".to_vec()),
            ("f2".to_string(), b"2".to_vec()),
            ("f3".to_string(), b"3".to_vec()),
        ])
    }

    fn entry(key: &str) -> SecretField {
        SecretField {
            key: key.into(),
            ..SecretField::default()
        }
    }

    fn by_field(key: &str, field: &str, section: Option<&str>) -> SecretField {
        SecretField {
            field: Some(field.into()),
            section: section.map(Into::into),
            ..entry(key)
        }
    }

    fn one(entry: SecretField) -> Result<String, SelectError> {
        let data = select(&item(), &files(), std::slice::from_ref(&entry))?;
        Ok(String::from_utf8(data[&entry.key].clone()).unwrap())
    }

    #[test]
    fn fields_are_renamed_by_id_or_label() {
        let data = select(
            &item(),
            &files(),
            &[by_field("DB_USER", "username", None), by_field("DB_HOST", "p1", None)],
        )
        .unwrap();
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["DB_HOST", "DB_USER"],
            "only what was asked"
        );
        assert_eq!(data["DB_USER"], b"admin");
        assert_eq!(data["DB_HOST"], b"db.prod");
    }

    #[test]
    fn an_id_wins_over_a_label() {
        // "password" is the id of one field and the label of two.
        assert_eq!(one(by_field("K", "password", None)).unwrap(), "pw");
    }

    #[test]
    fn a_section_narrows_a_label_that_is_used_twice() {
        let err = one(by_field("K", "host", None)).unwrap_err();
        assert!(matches!(err, SelectError::Ambiguous { .. }), "{err:?}");
        assert!(err.to_string().contains("ids p1, s1"), "{err}");
        assert_eq!(one(by_field("K", "host", Some("Staging"))).unwrap(), "db.stage");
        assert_eq!(one(by_field("K", "host", Some("s-prod"))).unwrap(), "db.prod");
        assert_eq!(
            one(by_field("K", "password", Some("Production"))).unwrap(),
            "prod-pw",
            "only fields of that section are candidates"
        );
    }

    #[test]
    fn unknown_names_are_not_found() {
        let err = one(by_field("K", "nope", None)).unwrap_err();
        assert!(matches!(err, SelectError::NotFound { .. }));
        assert_eq!(
            err.to_string(),
            "fields entry key \"K\" <- field \"nope\": no field of the item has that id or label"
        );
        let err = one(by_field("K", "username", Some("Production"))).unwrap_err();
        assert!(err.to_string().contains("no field of that section"), "{err}");
        let err = one(by_field("K", "host", Some("Nowhere"))).unwrap_err();
        assert!(
            err.to_string().contains("no section with id or label \"Nowhere\""),
            "{err}"
        );
    }

    #[test]
    fn empty_values_are_written_when_asked_for() {
        assert_eq!(one(by_field("K", "note", None)).unwrap(), "");
    }

    #[test]
    fn files_by_name_or_id_keep_their_bytes() {
        let by_name = SecretField {
            file: Some("ca.pem".into()),
            ..entry("ca.crt")
        };
        assert_eq!(one(by_name).unwrap(), "-----BEGIN CERTIFICATE-----");
        let dup = SecretField {
            file: Some("dup.txt".into()),
            ..entry("K")
        };
        assert!(matches!(one(dup).unwrap_err(), SelectError::Ambiguous { .. }));
        let by_id = SecretField {
            file: Some("f3".into()),
            ..entry("K")
        };
        assert_eq!(one(by_id).unwrap(), "3");
    }

    #[test]
    fn urls_by_label() {
        let console = SecretField {
            url: Some("console".into()),
            ..entry("K")
        };
        assert_eq!(one(console).unwrap(), "https://console");
        let docs = SecretField {
            url: Some("docs".into()),
            ..entry("K")
        };
        assert!(matches!(one(docs).unwrap_err(), SelectError::Ambiguous { .. }));
        let none = SecretField {
            url: Some("website".into()),
            ..entry("K")
        };
        assert!(matches!(one(none).unwrap_err(), SelectError::NotFound { .. }));
    }

    #[test]
    fn messages_never_hold_values() {
        for wanted in ["host", "nope"] {
            let message = one(by_field("K", wanted, None)).unwrap_err().to_string();
            for value in ["admin", "pw", "db.prod", "db.stage", "prod-pw"] {
                assert!(!message.contains(value), "{message}");
            }
        }
    }
}
