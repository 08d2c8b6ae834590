//! The activity log behind `GET /v1/activity`: the most recent API requests, newest first.

use std::collections::VecDeque;

use jiff::Timestamp;

use super::generate::random_id;
use onepassword_connect::models::{
    ApiAction, ApiActor, ApiRequest, ApiResource, ApiResult, ItemRef, ResourceType, VaultRef,
};

/// How many entries are kept; older ones are dropped but still counted in the total.
pub const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
pub struct ActivityLog {
    entries: VecDeque<ApiRequest>,
    dropped: u64,
}

/// What a handler knows about a request it served.
pub struct Entry<'a> {
    pub action: ApiAction,
    pub allowed: bool,
    pub actor_id: &'a str,
    pub actor_name: &'a str,
    pub user_agent: &'a str,
    pub vault_id: &'a str,
    pub item_id: Option<&'a str>,
    pub item_version: u64,
}

impl ActivityLog {
    pub fn record(&mut self, entry: Entry<'_>) {
        if self.entries.len() == CAPACITY {
            self.entries.pop_back();
            self.dropped += 1;
        }
        self.entries.push_front(ApiRequest {
            request_id: random_id(),
            timestamp: Some(Timestamp::now()),
            action: Some(entry.action),
            result: Some(if entry.allowed {
                ApiResult::Success
            } else {
                ApiResult::Deny
            }),
            actor: ApiActor {
                id: entry.actor_id.to_owned(),
                account: entry.actor_name.to_owned(),
                jti: String::new(),
                user_agent: entry.user_agent.to_owned(),
                request_ip: "127.0.0.1".to_owned(),
            },
            resource: ApiResource {
                resource_type: Some(if entry.item_id.is_some() {
                    ResourceType::Item
                } else {
                    ResourceType::Vault
                }),
                vault: Some(VaultRef {
                    id: entry.vault_id.to_owned(),
                }),
                item: entry.item_id.map(|id| ItemRef { id: id.to_owned() }),
                item_version: entry.item_version,
            },
        });
    }

    /// One page and the `Content-Range` header value (`1-50/1134`).
    pub fn page(&self, limit: usize, offset: usize) -> (Vec<ApiRequest>, String) {
        let total = self.entries.len() as u64 + self.dropped;
        let page: Vec<ApiRequest> = self.entries.iter().skip(offset).take(limit).cloned().collect();
        let range = if page.is_empty() {
            format!("0-0/{total}")
        } else {
            format!("{}-{}/{total}", offset + 1, offset + page.len())
        };
        (page, range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: u64) -> Entry<'static> {
        Entry {
            action: ApiAction::Read,
            allowed: true,
            actor_id: "A",
            actor_name: "op",
            user_agent: "ua",
            vault_id: "v",
            item_id: Some("i"),
            item_version: version,
        }
    }

    #[test]
    fn pages_are_newest_first_with_content_range() {
        let mut log = ActivityLog::default();
        for v in 1..=5 {
            log.record(entry(v));
        }
        let (page, range) = log.page(2, 1);
        assert_eq!(page.iter().map(|r| r.resource.item_version).collect::<Vec<_>>(), [4, 3]);
        assert_eq!(range, "2-3/5");
        assert_eq!(log.page(10, 10).1, "0-0/5");
    }
}
