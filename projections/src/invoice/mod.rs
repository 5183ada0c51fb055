//! Monthly invoices as a pure fold over recorded events.
//!
//! [`InvoiceInputs`] folds every event once, on effective (business) time;
//! [`workspace_invoices`] and [`account_invoice`] compute documents from it
//! for any month. Folding only the events up to a global position gives the
//! invoice as known then, which is how an issued invoice is reproduced.

pub mod compute;
pub mod inputs;
pub mod timeline;

pub use compute::{account_invoice, workspace_invoices, InvoiceProblem};
pub use inputs::InvoiceInputs;

use crate::{Projection, Recorded};

impl Projection for InvoiceInputs {
    fn name(&self) -> &'static str {
        "invoice-inputs"
    }

    fn apply(&mut self, event: &Recorded<'_>) {
        InvoiceInputs::apply(self, event);
    }
}
