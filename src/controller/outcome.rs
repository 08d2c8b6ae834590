//! What one pass of the pipeline produced: the input of the status step.

use super::build::{Collision, Source};
use super::error::Error;
use super::repairs::RepairReport;
use crate::crd::ItemStatus;

/// What the apply step did to the Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    Created,
    /// The item changed: new data.
    Updated,
    /// The Secret was changed or deleted by hand: put back.
    Repaired,
    /// The Secret type changed, which Kubernetes only allows by deleting and creating.
    Recreated,
    /// Only the digest was missing or made with another key: written, without an Event.
    Sealed,
    Unchanged,
    /// The item has the ignore tag: the Secret was left as it is.
    Frozen,
    /// Something keeps changing the Secret: the next repair waits this long.
    RepairDelayed(std::time::Duration),
}

impl Write {
    pub(crate) fn wrote(self) -> bool {
        matches!(
            self,
            Self::Created | Self::Updated | Self::Repaired | Self::Recreated | Self::Sealed
        )
    }
}

/// Why Connect could not confirm an item is current (from the poller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConnectFailure {
    pub reason: &'static str,
    pub message: String,
}

impl From<&Error> for ConnectFailure {
    fn from(error: &Error) -> Self {
        Self {
            reason: error.reason(),
            message: error.message(),
        }
    }
}

/// A successful sync.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Synced {
    /// Set when the Secret matches the last known item but Connect cannot be reached to
    /// confirm it is current: Synced is False with this reason, Ready stays True.
    pub connect_failure: Option<ConnectFailure>,
    pub item_path: String,
    pub vault_id: String,
    pub item_id: String,
    /// The item version the Secret holds now.
    pub item_version: u64,
    /// Each entry of `spec.items` as resolved, with the item version the Secret holds now.
    pub items: Vec<ItemStatus>,
    pub secret_name: String,
    pub write: Write,
    pub collisions: Vec<Collision>,
    /// Labels and file names that could not become a key.
    pub skipped: Vec<Source>,
    /// Other items with the chosen item's title; `None` when the resolution was reused
    /// from status and not looked up again.
    pub ambiguous_with: Option<Vec<String>>,
    /// For a repair: `Some` when an Event should report it (and the repairs since the last
    /// one); `None` while repairs of a Secret under attack are aggregated.
    pub repair_event: Option<RepairReport>,
}

impl Synced {
    /// The item versions the Secret holds, for messages: `item version 3`, and with more
    /// items `item version 3 (items: api 2, db 7)`.
    pub(crate) fn versions(&self) -> String {
        let primary = format!("item version {}", self.item_version);
        if self.items.is_empty() {
            return primary;
        }
        let items: Vec<String> = self
            .items
            .iter()
            .map(|i| format!("{} {}", i.name, i.item_version.unwrap_or_default()))
            .collect();
        format!("{primary} (items: {})", items.join(", "))
    }
}
