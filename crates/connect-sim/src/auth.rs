//! Bearer tokens of the simulator, each scoped to vaults with read or read-write access.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

use super::data::{Access, TokenSpec};
use super::error::ApiError;
use super::generate::stable_id;

/// What one token may do.
#[derive(Debug)]
pub struct Grant {
    pub name: String,
    /// Stable actor id shown in the activity log and as `lastEditedBy`.
    pub actor_id: String,
    /// Access to every vault (`*`), if granted.
    pub all_vaults: Option<Access>,
    pub vaults: HashMap<String, Access>,
}

impl Grant {
    /// The highest access from the vault's own grant and the `*` grant.
    pub fn access(&self, vault_id: &str) -> Option<Access> {
        self.vaults.get(vault_id).copied().max(self.all_vaults)
    }

    pub fn can_read(&self, vault_id: &str) -> bool {
        self.access(vault_id).is_some()
    }

    pub fn can_write(&self, vault_id: &str) -> bool {
        self.access(vault_id) == Some(Access::ReadWrite)
    }
}

/// Token → grant.
#[derive(Debug, Default)]
pub struct Tokens {
    by_token: HashMap<String, Arc<Grant>>,
}

impl Tokens {
    /// Builds grants, turning vault names into ids with `vault_id_of`.
    pub fn from_specs(specs: &[TokenSpec], vault_id_of: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut by_token = HashMap::new();
        for spec in specs {
            if spec.token.trim().is_empty() {
                return Err(format!("token {:?} is empty", spec.name));
            }
            let mut grant = Grant {
                name: spec.name.clone(),
                actor_id: stable_id(&["actor", &spec.name]).to_uppercase(),
                all_vaults: None,
                vaults: HashMap::new(),
            };
            for (vault, access) in &spec.vaults {
                if vault == "*" {
                    grant.all_vaults = Some(*access);
                } else {
                    let id = vault_id_of(vault)
                        .ok_or_else(|| format!("token {:?} names unknown vault {vault:?}", spec.name))?;
                    grant.vaults.insert(id, *access);
                }
            }
            if by_token.insert(spec.token.clone(), Arc::new(grant)).is_some() {
                return Err(format!("token of {:?} is defined twice", spec.name));
            }
        }
        Ok(Self { by_token })
    }

    /// 401 unless the request carries `Authorization: Bearer <known token>`.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Grant>, ApiError> {
        let value = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::invalid_token)?;
        let (scheme, token) = value.trim().split_once(' ').ok_or_else(ApiError::invalid_token)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::invalid_token());
        }
        self.by_token
            .get(token.trim())
            .cloned()
            .ok_or_else(ApiError::unknown_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn tokens() -> Tokens {
        let specs = vec![
            TokenSpec {
                name: "reader".into(),
                token: "r".into(),
                vaults: BTreeMap::from([("A".into(), Access::Read)]),
            },
            TokenSpec {
                name: "mixed".into(),
                token: "m".into(),
                vaults: BTreeMap::from([("*".into(), Access::Read), ("B".into(), Access::ReadWrite)]),
            },
        ];
        Tokens::from_specs(&specs, |name| Some(format!("id-{name}"))).unwrap()
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn authentication_errors() {
        let t = tokens();
        assert_eq!(
            t.authenticate(&HeaderMap::new()).unwrap_err(),
            ApiError::invalid_token()
        );
        assert_eq!(
            t.authenticate(&headers("Basic r")).unwrap_err(),
            ApiError::invalid_token()
        );
        assert_eq!(
            t.authenticate(&headers("Bearer nope")).unwrap_err(),
            ApiError::unknown_token()
        );
        assert_eq!(t.authenticate(&headers("bearer r")).unwrap().name, "reader");
    }

    #[test]
    fn scopes() {
        let t = tokens();
        let reader = t.authenticate(&headers("Bearer r")).unwrap();
        assert!(reader.can_read("id-A") && !reader.can_write("id-A") && !reader.can_read("id-B"));
        let mixed = t.authenticate(&headers("Bearer m")).unwrap();
        assert!(mixed.can_read("id-A") && !mixed.can_write("id-A"));
        assert!(mixed.can_write("id-B"));
    }

    #[test]
    fn unknown_vault_names_are_errors() {
        let specs = vec![TokenSpec {
            name: "x".into(),
            token: "x".into(),
            vaults: BTreeMap::from([("Nope".into(), Access::Read)]),
        }];
        assert!(Tokens::from_specs(&specs, |_| None).unwrap_err().contains("Nope"));
    }
}
