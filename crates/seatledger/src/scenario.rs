//! Running a command file line by line, keeping going past refusals: what
//! the demo and the golden fixtures do. (`seatledger apply` is stricter: all
//! or nothing per file.)

use chrono::{DateTime, Utc};
use seatledger_app::{AppError, CommandHandler, CommandMeta, HandleOutcome};
use seatledger_codec::{parse_command, CommandEnvelope};
use seatledger_domain::Command;
use sha2::{Digest, Sha256};

/// A command id derived from a line's text: applying the same file twice
/// never applies a line twice. Two identical lines in one file need their
/// own `command_id`s.
pub fn derive_command_id(line: &str) -> uuid::Uuid {
    let digest = Sha256::digest(line.trim().as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Whether the first command of a command file is in the store already.
pub async fn already_applied(store: &dyn seatledger_store::EventStore, text: &str) -> anyhow::Result<bool> {
    let Some(first) = text.lines().find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//")) else {
        return Ok(false);
    };
    let id = match parse_command(first) {
        Ok(envelope) => envelope.command_id.unwrap_or_else(|| derive_command_id(first)),
        Err(_) => return Ok(false),
    };
    Ok(store.command_outcome(id).await?.is_some())
}

/// Turn a parsed line into a command and its metadata.
pub fn to_command(
    envelope: CommandEnvelope,
    line_text: &str,
    default_at: DateTime<Utc>,
    default_actor: &str,
    default_channel: &str,
) -> (Command, CommandMeta) {
    let command_id = envelope.command_id.unwrap_or_else(|| derive_command_id(line_text));
    let meta = CommandMeta {
        actor: envelope.actor.unwrap_or_else(|| default_actor.to_owned()),
        channel: envelope.channel.unwrap_or_else(|| default_channel.to_owned()),
        command_id,
        correlation_id: envelope.correlation_id.unwrap_or(command_id),
        causation_id: envelope.causation_id,
    };
    (Command { at: envelope.at.unwrap_or(default_at), body: envelope.body }, meta)
}

/// What happened to one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineOutcome {
    Applied { events: usize },
    AlreadyApplied,
    Unchanged,
    Refused { error: String },
}

/// Handle every line of `text` on its own; a refused line is recorded and
/// the next one runs. Fails only on a store error.
pub async fn run_lines(
    handler: &CommandHandler,
    text: &str,
    default_at: DateTime<Utc>,
    actor: &str,
) -> anyhow::Result<Vec<(usize, LineOutcome)>> {
    let mut outcomes = vec![];
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() || line.trim_start().starts_with("//") {
            continue;
        }
        let outcome = match parse_command(line) {
            Err(e) => LineOutcome::Refused { error: e.to_string() },
            Ok(envelope) => {
                let (command, meta) = to_command(envelope, line, default_at, actor, "cli");
                match handler.handle(&command, &meta).await {
                    Ok(HandleOutcome::Appended { events, .. }) => LineOutcome::Applied { events: events.len() },
                    Ok(HandleOutcome::AlreadyApplied(_)) => LineOutcome::AlreadyApplied,
                    Ok(HandleOutcome::NoChange) => LineOutcome::Unchanged,
                    Err(AppError::Rejected(e)) => LineOutcome::Refused { error: e.to_string() },
                    Err(e) => return Err(anyhow::Error::new(e).context(format!("line {number}"))),
                }
            }
        };
        outcomes.push((number, outcome));
    }
    Ok(outcomes)
}

/// The shared product catalog every seed scenario starts from.
pub const CATALOG: &str = include_str!("../../../fixtures/scenarios/catalog.jsonl");

/// The day the demo shows licence state on: the end of the scenarios' month.
pub const DEMO_DAY: chrono::NaiveDate = match chrono::NaiveDate::from_ymd_opt(2024, 3, 31) {
    Some(d) => d,
    None => panic!("2024-03-31 is a date"),
};

/// One scenario per seed document, as a command file.
#[derive(Debug, Clone, Copy)]
pub struct SeedScenario {
    /// The seed document it comes from (`000` … `004`).
    pub seed: &'static str,
    /// Its folder under `fixtures/scenarios/`.
    pub dir: &'static str,
    pub title: &'static str,
    pub commands: &'static str,
}

impl SeedScenario {
    /// Business time for lines that carry no `at`.
    pub fn default_at(&self) -> DateTime<Utc> {
        DEMO_DAY.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
    }
}

macro_rules! seed {
    ($seed:literal, $dir:literal, $title:literal) => {
        SeedScenario {
            seed: $seed,
            dir: $dir,
            title: $title,
            commands: include_str!(concat!("../../../fixtures/scenarios/", $dir, "/commands.jsonl")),
        }
    };
}

/// The five seed scenarios, in seed order.
pub const SEED_SCENARIOS: &[SeedScenario] = &[
    seed!("000", "000-billing-and-status", "billing info, modules per user, status authority, SCIM, legacy plans"),
    seed!("001", "001-billing-modes", "single, assigned and pooled billing modes"),
    seed!("002", "002-licence-manager", "pools, manual additions, alerts, top-ups, notifications"),
    seed!("003", "003-subscriptions", "subscriptions, bundles, trials, deactivation, the licence change log"),
    seed!("004", "004-active-users", "internal and external users, reservations, memberships, punch passes"),
];
