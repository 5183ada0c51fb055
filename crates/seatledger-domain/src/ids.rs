//! Identifiers. Every id is a short text chosen by the caller (ids arrive
//! inside commands; the domain never invents one), checked once when built.
//! The text is a `SmolStr`: up to 23 bytes it is kept inline, so building,
//! cloning and comparing the ids the projections key their maps by touches
//! no heap (lever 24 in docs/benchmarks.md).

use crate::error::InvalidValue;

/// The longest id, in characters.
pub const MAX_ID_CHARS: usize = 64;

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(smol_str::SmolStr);

        impl $name {
            /// What kind of id this is, for error messages.
            pub const KIND: &'static str = $what;

            /// Check and build the id: 1 to 64 characters of letters, digits,
            /// `.`, `_`, `-`, `:` or `@`.
            pub fn new(text: impl Into<smol_str::SmolStr>) -> Result<Self, InvalidValue> {
                let text = text.into();
                check_id(&text, $what)?;
                Ok(Self(text))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The text as a `SmolStr` of its own: a copy when inline, the
            /// same shared text beyond 23 bytes; never a new allocation.
            pub fn to_smol_str(&self) -> smol_str::SmolStr {
                self.0.clone()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }
    };
}

/// One byte an id may hold; all of them are ASCII.
fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'@')
}

fn check_id(text: &str, what: &'static str) -> Result<(), InvalidValue> {
    if text.is_empty() {
        return Err(InvalidValue::new(what, "must not be empty"));
    }
    // Every id of every decoded event passes here: when all bytes are
    // allowed (so ASCII, one byte a character), the length in bytes is the
    // length in characters and no `char` needs decoding.
    if text.len() <= MAX_ID_CHARS && text.bytes().all(is_id_byte) {
        return Ok(());
    }
    if text.chars().count() > MAX_ID_CHARS {
        return Err(InvalidValue::new(what, format!("{text:?} is longer than {MAX_ID_CHARS} characters")));
    }
    if let Some(c) = text.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@'))) {
        return Err(InvalidValue::new(
            what,
            format!("{text:?} has the character {c:?}; use letters, digits, . _ - : @"),
        ));
    }
    Ok(())
}

text_id!(
    /// A workspace: one customer environment on the hosting instance.
    WorkspaceId, "workspace id");
text_id!(
    /// A billing account of a workspace.
    AccountId, "account id");
text_id!(
    /// An organization in a workspace's organization tree.
    OrgId, "organization id");
text_id!(
    /// A user of a workspace.
    UserId, "user id");
text_id!(
    /// A group of users.
    GroupId, "group id");
text_id!(
    /// A product in the catalog (its SKU).
    Sku, "sku");
text_id!(
    /// A price list in the catalog.
    PriceListId, "price list id");
text_id!(
    /// A subscription of a billing account to a product.
    SubscriptionId, "subscription id");
text_id!(
    /// A notification recipient.
    RecipientId, "recipient id");
text_id!(
    /// A one-off reservation.
    ReservationId, "reservation id");
text_id!(
    /// A recurring reservation series.
    SeriesId, "series id");
text_id!(
    /// A membership.
    MembershipId, "membership id");
text_id!(
    /// One use of a punch pass.
    PunchUseId, "punch pass use id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_documented_alphabet() {
        assert!(UserId::new("alice@acme.example").is_ok());
        assert!(Sku::new("HYBRID-2024_v1:eu").is_ok());
    }

    #[test]
    fn ids_refuse_empty_long_and_odd_text() {
        assert_eq!(UserId::new("").unwrap_err().to_string(), "user id must not be empty");
        assert!(UserId::new("a".repeat(65)).unwrap_err().to_string().contains("longer than 64"));
        let err = Sku::new("hy brid").unwrap_err().to_string();
        assert!(err.contains("' '"), "{err}");
    }

    #[test]
    fn the_length_limit_counts_characters_and_comes_before_the_alphabet() {
        assert!(UserId::new("a".repeat(64)).is_ok());
        // 64 characters, 65 bytes: refused for the character, not the length.
        let err = UserId::new(format!("{}é", "a".repeat(63))).unwrap_err().to_string();
        assert!(err.contains("'é'") && !err.contains("longer"), "{err}");
        // Too long and with an odd character: the length is named first.
        let err = UserId::new(format!("{} ", "a".repeat(64))).unwrap_err().to_string();
        assert!(err.contains("longer than 64"), "{err}");
    }

    /// Up to 23 bytes an id is kept inline, beyond that on the heap: either
    /// way it is the same text, equal, ordered and hashed as that text.
    #[test]
    fn ids_are_their_text_on_both_sides_of_the_inline_limit() {
        use std::collections::hash_map::DefaultHasher;
        use std::hash::{Hash, Hasher};
        let hash = |v: &dyn Fn(&mut DefaultHasher)| {
            let mut h = DefaultHasher::new();
            v(&mut h);
            h.finish()
        };
        let texts = ["b".repeat(22), "b".repeat(23), "b".repeat(24), "a".repeat(64), "c".into(), "b".repeat(23) + "a"];
        let ids: Vec<UserId> = texts.iter().map(|t| UserId::new(t.as_str()).unwrap()).collect();
        for (id, text) in ids.iter().zip(&texts) {
            assert_eq!(id.as_str(), text);
            assert_eq!(id.to_string(), *text);
            assert_eq!(id.clone(), *id);
            assert_eq!(UserId::new(text.clone()).unwrap(), *id, "built from a String");
            assert_eq!(hash(&|h| id.hash(h)), hash(&|h| text.as_str().hash(h)), "{text}");
        }
        for (a, x) in ids.iter().zip(&texts) {
            for (b, y) in ids.iter().zip(&texts) {
                assert_eq!(a.cmp(b), x.cmp(y), "{x} against {y}");
            }
        }
    }

    #[test]
    fn an_ids_own_text_is_shared_beyond_the_inline_limit() {
        let short = UserId::new("b".repeat(23)).unwrap();
        assert_eq!(short.to_smol_str().as_str(), short.as_str());
        // Beyond 23 bytes the text is the id's own, not a copy.
        for length in [24, 64] {
            let long = UserId::new("a".repeat(length)).unwrap();
            assert_eq!(long.to_smol_str().as_str(), long.as_str());
            assert!(std::ptr::eq(long.to_smol_str().as_str(), long.as_str()), "{length} bytes");
        }
    }
}
