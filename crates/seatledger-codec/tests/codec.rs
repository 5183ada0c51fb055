//! The stored form of events and the command-file format.

use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use seatledger_codec::*;
use seatledger_domain::*;
use std::str::FromStr;

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn eur(s: &str) -> Money {
    Money::new(Decimal::from_str(s).unwrap(), Currency::from_code("EUR").unwrap())
}

fn profile() -> UserProfile {
    UserProfile {
        first_name: "Zoë".into(),
        last_name: "van Dijk".into(),
        email: "zoe@acme.example".into(),
        username: "zoe".into(),
        kind: UserKind::Guest,
        audience: Audience::External,
        administrator: true,
    }
}

/// One of every event, with every optional field set somewhere.
fn invoice_line(amount: &str) -> InvoiceLine {
    InvoiceLine {
        key: "per_licence/s1".into(),
        description: "Hybrid seats".into(),
        sku: Some(Sku::new("HYBRID").unwrap()),
        subscription: Some(SubscriptionId::new("s1").unwrap()),
        rule: "per_licence.daily_prorated".into(),
        formula: "31.00 × 41 quantity-days ÷ 31 days".into(),
        quantity: Decimal::from_str("1.3225806451612903225806451613").unwrap(),
        unit_price: eur("31.00"),
        discount: Percent::ZERO,
        amount: eur(amount),
        taxable: true,
        inputs: vec![LineInput { name: "quantity_days".into(), value: "41".into() }],
        events: vec![uuid::Uuid::from_u128(42)],
    }
}

fn every_event() -> Vec<Event> {
    let sku = Sku::new("HYBRID").unwrap();
    let pool = PoolKey { scope: PoolScope::Organization(OrgId::new("us").unwrap()), sku: sku.clone() };
    let terms = SubscriptionTerms {
        subscription: SubscriptionId::new("s1").unwrap(),
        account: AccountId::new("acc").unwrap(),
        organization: Some(OrgId::new("us").unwrap()),
        sku: sku.clone(),
        parent: None,
        bundle_role: BundleRole::Parent,
        name: "Hybrid".into(),
        friendly_name: Some("Hybrid seats".into()),
        effective_start: date(2024, 3, 1),
        billable: true,
        trial: false,
        deactivate_on: Some(date(2025, 3, 1)),
        channel: SubscriptionChannel::Provider,
        quantity: 10,
        order: OrderDetails {
            order_reference: Some("SO-1".into()),
            order_date: Some(date(2024, 2, 28)),
            ordered_by: "ops".into(),
            order_thru: Some("portal".into()),
        },
        price_list: PriceListId::new("default").unwrap(),
        selling_per_unit: eur("31.00"),
        cost_per_unit: eur("20.5"),
        discount: Percent::new(Decimal::from(10), "discount").unwrap(),
        taxable: true,
        exempt_from_indexation: false,
        product_class: Some("modules".into()),
        sales_unit: "seat".into(),
        description: None,
        provider: Some(ProviderDetails {
            provider: "Partner Center".into(),
            provisioning_frequency: Some(ProvisioningFrequency::Annual),
            auto_renew: true,
            commitment_end_date: Some(date(2025, 2, 28)),
            ..Default::default()
        }),
        guest_selling_per_unit: Some(eur("7.75")),
        counting_policy: Some(CountingPolicy::Peak),
    };
    vec![
        Event::ProductDefined {
            sku: sku.clone(),
            name: "Hybrid".into(),
            kind: ProductKind::Module,
            charge_model: ChargeModel::PerLicence,
            product_class: None,
            sales_unit: "seat".into(),
            manufacturer: Some("W365".into()),
        },
        Event::PriceSet {
            sku: sku.clone(),
            price: PriceItem {
                price_list: PriceListId::new("default").unwrap(),
                selling_per_unit: eur("31"),
                cost_per_unit: eur("12.345"),
                guest_selling_per_unit: Some(eur("5")),
                counting_policy: Some(CountingPolicy::DailyProrated),
            },
        },
        Event::BundleDefined { parent: sku.clone(), children: vec![Sku::new("C").unwrap()], add_ons: vec![] },
        Event::WorkspaceCreated {
            workspace: WorkspaceId::new("acme").unwrap(),
            name: "Acme 東京 🚀".into(),
            billing_mode: BillingMode::Assigned,
            created_on: date(2023, 5, 1),
            legacy_plan: Some(LegacyPlan::Boost),
        },
        Event::BillingInfoSet {
            info: BillingInfo {
                company_name: "Acme".into(),
                reference_number: "R-1".into(),
                customer_type: "partner".into(),
                industry: "retail".into(),
            },
        },
        Event::WorkspaceMigratedToModules { migrated_on: date(2024, 5, 1) },
        Event::BillingActivated { activated_on: date(2024, 5, 2) },
        Event::BillingAccountOpened {
            account: AccountId::new("acc").unwrap(),
            name: "Acme US".into(),
            currency: Currency::from_code("BHD").unwrap(),
            tax_rate: Percent::new(Decimal::from_str("20.5").unwrap(), "tax").unwrap(),
            billing_contract: Some("BC-9".into()),
        },
        Event::OrganizationCreated {
            org: OrgId::new("us").unwrap(),
            name: "US".into(),
            parent: None,
            account: Some(AccountId::new("acc").unwrap()),
        },
        Event::SubscriptionCreated { terms: Box::new(terms) },
        Event::QuantityChanged {
            subscription: SubscriptionId::new("s1").unwrap(),
            pool: pool.clone(),
            from: 10,
            to: 12,
            reason: QuantityReason::AutomaticTopUp { trigger_event: uuid::Uuid::from_u128(7) },
            order: OrderDetails::default(),
            channel: SubscriptionChannel::System,
        },
        Event::DeactivationScheduled { subscription: SubscriptionId::new("s1").unwrap(), deactivate_on: None },
        Event::TrialEnded {
            subscription: SubscriptionId::new("s1").unwrap(),
            converted: true,
            ended_on: date(2024, 4, 1),
        },
        Event::SubscriptionEnded { subscription: SubscriptionId::new("s1").unwrap(), ended_on: date(2024, 4, 1) },
        Event::LicenceSettingsChanged {
            pool: pool.clone(),
            settings: LicenceSettings {
                alert_threshold: Some(2),
                top_up: Some(TopUpSettings { vacant_seat_threshold: 3, max_per_top_up: 5, max_per_month: 20 }),
            },
        },
        Event::LowLicenceAlertRaised { pool: pool.clone(), available: 1, threshold: 2 },
        Event::LicenceAlertCleared { pool: pool.clone(), available: 3, threshold: 2 },
        Event::TopUpCapReached { pool, trigger_event: uuid::Uuid::from_u128(9), needed: 4, allowed: 1, month_used: 9 },
        Event::NotificationRecipientAdded {
            recipient: RecipientId::new("r1").unwrap(),
            email: "ops@acme.example".into(),
            kinds: vec![NotificationKind::LowLicence, NotificationKind::CapReached],
        },
        Event::NotificationSettingsChanged { recipient: RecipientId::new("r1").unwrap(), kinds: vec![] },
        Event::NotificationRecipientRemoved { recipient: RecipientId::new("r1").unwrap() },
        Event::UserAdded {
            user: UserId::new("u1").unwrap(),
            org: OrgId::new("us").unwrap(),
            profile: profile(),
            status: UserStatus::Inactive,
            source: UserSource::Scim,
        },
        Event::UserProfileUpdated { user: UserId::new("u1").unwrap(), profile: profile() },
        Event::UserStatusChanged {
            user: UserId::new("u1").unwrap(),
            from: UserStatus::Active,
            to: UserStatus::Deleted,
            source: StatusChangeSource::Scim,
        },
        Event::StatusAuthoritySet { authority: StatusAuthority::Directory },
        Event::ScimDefaultStatusSet { status: UserStatus::Inactive },
        Event::SyncStarted { tool: SyncTool::AzureAd },
        Event::SyncStopped { tool: SyncTool::Scim },
        Event::GroupCreated { group: GroupId::new("g").unwrap(), name: "Sales".into() },
        Event::GroupMemberAdded { group: GroupId::new("g").unwrap(), user: UserId::new("u1").unwrap() },
        Event::GroupMemberRemoved { group: GroupId::new("g").unwrap(), user: UserId::new("u1").unwrap() },
        Event::ModuleAssigned { sku: sku.clone(), target: ModuleTarget::Group(GroupId::new("g").unwrap()) },
        Event::ModuleUnassigned { sku, target: ModuleTarget::User(UserId::new("u1").unwrap()) },
        Event::ReservationMade {
            reservation: ReservationId::new("res").unwrap(),
            user: UserId::new("u1").unwrap(),
            starts_at: Utc.with_ymd_and_hms(2024, 3, 5, 9, 0, 0).unwrap(),
            ends_at: Utc.with_ymd_and_hms(2024, 3, 5, 10, 30, 0).unwrap(),
        },
        Event::RecurringReservationOccurred {
            series: SeriesId::new("ser").unwrap(),
            user: UserId::new("u1").unwrap(),
            occurs_on: date(2024, 3, 6),
        },
        Event::MembershipStarted {
            membership: MembershipId::new("m").unwrap(),
            user: UserId::new("u1").unwrap(),
            starts_on: date(2024, 2, 1),
            ends_on: Some(date(2024, 3, 31)),
        },
        Event::MembershipEnded { membership: MembershipId::new("m").unwrap(), ends_on: date(2024, 3, 15) },
        Event::PunchPassUsed {
            use_id: PunchUseId::new("p").unwrap(),
            user: UserId::new("u1").unwrap(),
            used_on: date(2024, 3, 7),
        },
        Event::PricesIndexed {
            percent: Percent::new(Decimal::from_str("3.5").unwrap(), "p").unwrap(),
            effective_on: date(2025, 1, 1),
        },
        Event::InvoiceIssued {
            invoice: Box::new(InvoiceDocument {
                number: "acme-acc-2024-03".into(),
                workspace: WorkspaceId::new("acme").unwrap(),
                account: AccountId::new("acc").unwrap(),
                account_name: "Acme".into(),
                period: Month::new(2024, 3).unwrap(),
                currency: Currency::from_code("EUR").unwrap(),
                billing_info: BillingInfo::default(),
                lines: vec![invoice_line("41.00")],
                subtotal: eur("41.00"),
                taxes: vec![TaxLine {
                    rate: Percent::new(Decimal::from(20), "tax").unwrap(),
                    taxable_subtotal: eur("41.00"),
                    tax: eur("8.20"),
                }],
                total: eur("49.20"),
                computed_at_position: 99,
                inputs_digest: "ab".repeat(32),
            }),
        },
        Event::CreditNoteIssued { note: Box::new(note(NoteKind::Credit, "-1.00")) },
        Event::NotificationSent { notification: "ev/r1".into(), attempt: 2 },
        Event::NotificationFailed { notification: "ev/r1".into(), attempt: 1, reason: "smtp 451".into() },
        Event::DebitNoteIssued { note: Box::new(note(NoteKind::Debit, "2.00")) },
    ]
}

fn note(kind: NoteKind, amount: &str) -> NoteDocument {
    NoteDocument {
        number: "acme-acc-2024-03-N1".into(),
        kind,
        original: "acme-acc-2024-03".into(),
        workspace: WorkspaceId::new("acme").unwrap(),
        account: AccountId::new("acc").unwrap(),
        period: Month::new(2024, 3).unwrap(),
        currency: Currency::from_code("EUR").unwrap(),
        lines: vec![invoice_line(amount)],
        subtotal: eur(amount),
        taxes: vec![],
        total: eur(amount),
        computed_at_position: 120,
        inputs_digest: "cd".repeat(32),
    }
}

#[test]
fn every_event_type_round_trips_under_its_current_version() {
    let events = every_event();
    let mut seen = std::collections::BTreeSet::new();
    for event in &events {
        let encoded = encode(event);
        assert_eq!(Some(encoded.schema_version), current_version(encoded.event_type));
        let decoded = decode(encoded.event_type, encoded.schema_version, &encoded.payload)
            .unwrap_or_else(|e| panic!("{}: {e}", encoded.event_type));
        assert_eq!(&decoded, event);
        seen.insert(encoded.event_type);
    }
    // The test list covers the whole registry.
    let registry: std::collections::BTreeSet<_> = EVENT_TYPES.iter().map(|(t, _)| *t).collect();
    assert_eq!(seen, registry);
}

#[test]
fn money_is_written_as_decimal_text_with_its_currency() {
    let encoded = encode(&every_event()[1]);
    let v: serde_json::Value = serde_json::from_str(&encoded.payload).unwrap();
    assert_eq!(v["price"]["cost_per_unit"], serde_json::json!({"amount": "12.345", "currency": "EUR"}));
}

#[test]
fn a_v1_user_added_is_upcast_into_todays_type() {
    // Written by the first release: one full name, no audience, flat profile.
    let v1 = r#"{"user":"u7","org":"hq","name":"Ada King Lovelace","email":"ada@acme.example",
                 "username":"ada","kind":"regular","administrator":false,"status":"active","source":"manual"}"#;
    let event = decode("UserAdded", 1, v1).unwrap();
    assert_eq!(
        event,
        Event::UserAdded {
            user: UserId::new("u7").unwrap(),
            org: OrgId::new("hq").unwrap(),
            profile: UserProfile {
                first_name: "Ada".into(),
                last_name: "King Lovelace".into(),
                email: "ada@acme.example".into(),
                username: "ada".into(),
                kind: UserKind::Regular,
                audience: Audience::Internal,
                administrator: false,
            },
            status: UserStatus::Active,
            source: UserSource::Manual,
        }
    );
}

#[test]
fn unknown_types_versions_and_bad_payloads_are_named() {
    assert_eq!(decode("SeatsTeleported", 1, "{}").unwrap_err().to_string(), "unknown event type `SeatsTeleported`");
    let err = decode("UserAdded", 3, "{}").unwrap_err().to_string();
    assert_eq!(err, "event type `UserAdded` has no schema version 3 (this build reads up to 2)");
    let err = decode("GroupCreated", 1, r#"{"group":"g"}"#).unwrap_err().to_string();
    assert!(err.contains("missing field `name`"), "{err}");
    let err = decode("GroupCreated", 1, r#"{"group":"bad id","name":"x"}"#).unwrap_err().to_string();
    assert!(err.contains("field `group`") && err.contains("' '"), "{err}");
}

/// Ids are read into short inline texts (lever 24 in docs/benchmarks.md):
/// an escaped id, ids at and one past the 23-byte inline limit, one of 64
/// bytes, one too long and one of another JSON type still read, or fail with
/// the message they did.
#[test]
fn ids_read_the_same_escaped_long_or_of_the_wrong_type() {
    let group = |payload: &str| match decode("GroupCreated", 1, payload) {
        Ok(Event::GroupCreated { group, .. }) => Ok(group.as_str().to_owned()),
        Ok(other) => panic!("decoded as {other:?}"),
        Err(e) => Err(e.to_string()),
    };
    // A JSON escape, decoded: `\u0031` is `1`.
    assert_eq!(group(r#"{"group":"g\u0031","name":"x"}"#), Ok("g1".to_owned()));
    for inline_or_not in [23, 24] {
        let id = "g".repeat(inline_or_not);
        assert_eq!(group(&format!(r#"{{"group":"{id}","name":"x"}}"#)), Ok(id));
    }
    let long = "g".repeat(64);
    assert_eq!(group(&format!(r#"{{"group":"{long}","name":"x"}}"#)), Ok(long.clone()));
    let err = group(&format!(r#"{{"group":"{long}g","name":"x"}}"#)).unwrap_err();
    assert!(err.contains("field `group`") && err.contains("longer than 64"), "{err}");
    // serde_json names the place, as it did for a `String`.
    let err = group(r#"{"group":7,"name":"x"}"#).unwrap_err();
    assert!(err.contains("invalid type: integer `7`, expected a string at line 1 column 10"), "{err}");
}

#[test]
fn commands_round_trip_through_the_file_format() {
    let line = r#"{"command":"create_subscription","workspace":"acme","at":"2024-03-01T09:00:00Z","actor":"ops","command_id":"0190f0f0-0000-7000-8000-000000000001",
        "subscription":"s1","account":"acc","sku":"HYBRID","name":"Hybrid","effective_start":"2024-03-01","subscription_channel":"portal","quantity":5,
        "order":{"ordered_by":"ops","order_reference":"SO-1"},"price_list":"default","currency":"EUR","selling_per_unit":"29.95","discount":"10"}"#;
    let parsed = parse_command(line).unwrap();
    let WorkspaceCommand::CreateSubscription(new) = (match &parsed.body {
        CommandBody::Workspace { command, .. } => command.clone(),
        other => panic!("{other:?}"),
    }) else {
        panic!("not a subscription")
    };
    assert_eq!(new.selling_per_unit, Some(Decimal::from_str("29.95").unwrap()));
    assert_eq!(new.discount.value(), Decimal::from(10));
    assert_eq!(new.order.order_reference.as_deref(), Some("SO-1"));
    let again = parse_command(&encode_command(&parsed).unwrap()).unwrap();
    assert_eq!(again, parsed);
}

fn parse_err(line: &str) -> CommandParseError {
    parse_command(line).unwrap_err()
}

#[test]
fn bad_command_lines_name_the_field_at_fault() {
    let e = parse_err("{\"command\": ");
    assert!(e.field.is_none() && e.message.starts_with("malformed JSON"), "{e}");

    let e = parse_err(r#"{"command":"teleport_seats","workspace":"acme"}"#);
    assert_eq!(e.field.as_deref(), Some("command"));
    assert!(e.message.starts_with("unknown command `teleport_seats`"), "{e}");

    let e = parse_err(r#"{"command":"create_group","workspace":"acme","group":"g"}"#);
    assert_eq!(e.field.as_deref(), Some("name"), "{e}");

    let e = parse_err(r#"{"command":"create_group","workspace":"acme","group":"g","name":"x","colour":"red"}"#);
    assert_eq!(e.field.as_deref(), Some("colour"), "{e}");

    let e = parse_err(r#"{"command":"create_group","group":"g","name":"x"}"#);
    assert_eq!(e.field.as_deref(), Some("workspace"), "{e}");

    let e = parse_err(
        r#"{"command":"change_quantity","workspace":"acme","subscription":"s","quantity":-3,"order":{"ordered_by":"x"},"subscription_channel":"portal"}"#,
    );
    assert_eq!(e.field.as_deref(), Some("quantity"), "{e}");

    let e =
        parse_err(r#"{"command":"open_billing_account","workspace":"acme","account":"a","name":"A","currency":"EUX"}"#);
    assert_eq!(e.field.as_deref(), Some("currency"), "{e}");
    assert!(e.message.contains("not an ISO 4217"), "{e}");

    let e = parse_err(
        r#"{"command":"open_billing_account","workspace":"acme","account":"a","name":"A","currency":"EUR","tax_rate":"2o"}"#,
    );
    assert_eq!(e.field.as_deref(), Some("tax_rate"), "{e}");

    let e = parse_err(
        r#"{"command":"open_billing_account","workspace":"acme","account":"a","name":"A","currency":"EUR","tax_rate":20.5}"#,
    );
    assert!(e.message.contains("write decimals as strings"), "{e}");

    let e = parse_err(
        r#"{"command":"create_workspace","workspace":"acme","name":"A","billing_mode":"single","created_on":"2024-02-30"}"#,
    );
    assert_eq!(e.field.as_deref(), Some("created_on"), "{e}");

    let e = parse_err(
        r#"{"command":"create_workspace","workspace":"acme","at":"yesterday","name":"A","billing_mode":"single","created_on":"2024-02-01"}"#,
    );
    assert_eq!(e.field.as_deref(), Some("at"), "{e}");

    let e = parse_err(
        r#"{"command":"set_price","sku":"H","price":{"price_list":"p","selling_per_unit":{"amount":"-1","currency":"EUR"},"cost_per_unit":{"amount":"0","currency":"EUR"}}}"#,
    );
    assert_eq!(e.field.as_deref(), Some("price.selling_per_unit.amount"), "{e}");
    assert!(e.message.contains("negative"), "{e}");
}

/// Times on the wire are read with chrono's strict RFC 3339 parser first
/// (it is the cheap one) and its relaxed one otherwise: every text gives what
/// chrono's own `Deserialize` gives, value or refusal, and is written back
/// the same way.
#[test]
fn times_read_and_write_exactly_as_chrono_does() {
    use chrono::DateTime;
    use seatledger_codec::wire::WireTime;
    let texts = [
        "2024-03-01T08:00:00Z",
        "2024-03-01T08:00:00.123456Z",
        "2024-03-01T08:00:00.1Z",
        "2024-03-01T10:00:00+02:00",
        "2024-02-29T23:59:60Z",
        "0001-01-01T00:00:00Z",
        "2024-03-01t08:00:00z",
        "2024-03-01 08:00:00Z",
        "2024-03-01T08:00:00 +02:00",
        "2024-03-01T08:00:00",
        "2024-13-01T08:00:00Z",
        "2024-03-01",
        "yesterday",
        "",
    ];
    let mut accepted = 0;
    for text in texts {
        let json = serde_json::to_string(text).unwrap();
        let ours = serde_json::from_str::<WireTime>(&json);
        let chronos = serde_json::from_str::<DateTime<Utc>>(&json);
        match (&ours, &chronos) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.0, *b, "{text}");
                assert_eq!(serde_json::to_string(a).unwrap(), serde_json::to_string(b).unwrap(), "{text}");
                accepted += 1;
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{text}"),
            _ => panic!("{text}: ours {ours:?}, chrono's {chronos:?}"),
        }
    }
    assert!(accepted >= 7, "only {accepted} of the texts were times: the test checks too little");
}
