//! Readable tables for people; `--json` gives scripts the same data.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, ContentArrangement, Table};
use seatledger_projections::audit::AuditEntry;
use seatledger_projections::change_log::ChangeEntry;
use seatledger_projections::licence_state::PoolRow;
use seatledger_store::VerifyReport;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    t
}

fn right(v: impl ToString) -> Cell {
    Cell::new(v.to_string()).set_alignment(CellAlignment::Right)
}

/// Licence state: one row per pool.
pub fn pools(rows: &[PoolRow]) -> String {
    if rows.is_empty() {
        return "no licence pools yet".to_owned();
    }
    let mut t = table(&["Workspace", "Organization", "SKU", "Product", "Total", "Assigned", "Available", "Alert"]);
    for r in rows {
        let alert = match (r.alert_threshold, r.alert_raised) {
            (Some(th), true) => format!("LOW (≤ {th})"),
            (Some(th), false) => format!("at ≤ {th}"),
            (None, _) => "-".to_owned(),
        };
        // Only modules sold per licence cap assignments; elsewhere the
        // assigned count is shown, but nothing is "available".
        let available = if r.seat_limited { r.available.to_string() } else { "not capped".to_owned() };
        t.add_row(vec![
            Cell::new(&r.workspace),
            Cell::new(r.organization.as_deref().unwrap_or("(workspace)")),
            Cell::new(&r.sku),
            Cell::new(&r.product),
            right(r.total),
            right(r.assigned),
            right(available),
            Cell::new(alert),
        ]);
    }
    t.to_string()
}

/// The licence change log.
pub fn change_log<'a>(entries: impl IntoIterator<Item = &'a ChangeEntry>) -> String {
    let mut t =
        table(&["Effective", "Workspace", "Subscription", "SKU", "From", "To", "Reason", "Who", "Channel", "Order"]);
    let mut any = false;
    for e in entries {
        any = true;
        t.add_row(vec![
            Cell::new(e.effective_at.format("%Y-%m-%d %H:%M")),
            Cell::new(&e.workspace),
            Cell::new(&e.subscription),
            Cell::new(&e.sku),
            right(e.from),
            right(e.to),
            Cell::new(&e.reason),
            Cell::new(&e.ordered_by),
            Cell::new(&e.channel),
            Cell::new(e.order_reference.as_deref().unwrap_or("-")),
        ]);
    }
    if any {
        t.to_string()
    } else {
        "no licence changes".to_owned()
    }
}

/// Audit entries.
pub fn audit<'a>(entries: impl IntoIterator<Item = &'a AuditEntry>) -> String {
    let mut t = table(&["#", "Recorded", "Effective", "Workspace", "Type", "Actor", "Channel", "What"]);
    let mut any = false;
    for e in entries {
        any = true;
        t.add_row(vec![
            right(e.position),
            Cell::new(e.recorded_at.format("%Y-%m-%d %H:%M:%S")),
            Cell::new(e.effective_at.format("%Y-%m-%d %H:%M")),
            Cell::new(e.workspace.as_deref().unwrap_or("-")),
            Cell::new(&e.event_type),
            Cell::new(&e.actor),
            Cell::new(&e.channel),
            Cell::new(&e.summary),
        ]);
    }
    if any {
        t.to_string()
    } else {
        "no audit entries match".to_owned()
    }
}

/// The result of `verify`.
pub fn verify(report: &VerifyReport) -> String {
    match &report.first_broken {
        None => format!("hash chain intact: {} events verified", report.checked),
        Some(b) => format!(
            "hash chain BROKEN at position {} (event {}, stream `{}` version {}): {}; {} events before it verified",
            b.position, b.event_id, b.stream, b.stream_version, b.reason, report.checked
        ),
    }
}
