//! Licence state per pool: total, assigned and available seats.
//!
//! It folds the catalog and every workspace with the domain's own `evolve`,
//! so the numbers shown are exactly the numbers decisions are made on. Its
//! state is the workspaces' state, which has no stored form: it is rebuilt
//! from zero rather than restored (see `Projection::save`).

use crate::{Projection, Recorded};
use chrono::NaiveDate;
use seatledger_domain::{Catalog, PoolScope, StreamId, Workspace, WorkspaceId};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone)]
pub struct LicenceState {
    pub catalog: Catalog,
    pub workspaces: BTreeMap<WorkspaceId, Workspace>,
}

/// One pool on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolRow {
    pub workspace: String,
    /// The top-level organization in assigned mode; `None` for workspace-wide pools.
    pub organization: Option<String>,
    pub sku: String,
    pub product: String,
    /// Whether assignments are capped by the licences bought.
    pub seat_limited: bool,
    pub total: u64,
    pub assigned: u64,
    /// `total − assigned`, never below zero.
    pub available: u64,
    pub alert_threshold: Option<u32>,
    pub alert_raised: bool,
}

impl LicenceState {
    /// Every pool of every workspace as it stands on `on`.
    pub fn pools_on(&self, on: NaiveDate) -> Vec<PoolRow> {
        let mut rows = vec![];
        for ws in self.workspaces.values() {
            for pool in ws.pools() {
                let total = ws.pool_total_on(&pool, on);
                let assigned = ws.pool_assigned(&pool);
                rows.push(PoolRow {
                    workspace: ws.id.to_string(),
                    organization: match &pool.scope {
                        PoolScope::Workspace => None,
                        PoolScope::Organization(o) => Some(o.to_string()),
                    },
                    sku: pool.sku.to_string(),
                    product: self.catalog.product(&pool.sku).map(|p| p.name.clone()).unwrap_or_default(),
                    seat_limited: self.catalog.is_seat_limited(&pool.sku),
                    total,
                    assigned,
                    available: total.saturating_sub(assigned),
                    alert_threshold: ws.settings.get(&pool).and_then(|s| s.alert_threshold),
                    alert_raised: ws.alerts_raised.contains(&pool),
                });
            }
        }
        rows
    }
}

impl Projection for LicenceState {
    fn name(&self) -> &'static str {
        "licence-state"
    }

    fn apply(&mut self, r: &Recorded<'_>) {
        match r.stream {
            StreamId::Catalog => self.catalog.apply(r.event),
            StreamId::Invoices(_) | StreamId::Outbox(_) => {}
            StreamId::Workspace(id) => match self.workspaces.get_mut(id) {
                // In place: no remove and re-insert, no cloned id per event.
                Some(ws) => ws.apply(r.event),
                None => {
                    // Never decided on: no reservation ids to remember.
                    if let Some(ws) = Workspace::evolve(None, r.event) {
                        self.workspaces.insert(id.clone(), ws.for_reading());
                    }
                }
            },
        }
    }
}
