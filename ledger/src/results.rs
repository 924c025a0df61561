//! Reading TigerBeetle's per-event results: a batch reply lists only the events that did not
//! succeed, by index. These helpers turn that sparse list into one answer per event.

use tb::error::{CreateAccountErrorKind, CreateTransferErrorKind, CreateTransfersError};
use tigerbeetle_unofficial as tb;

use crate::error::LedgerError;

/// The result of each event of a `create_transfers` batch, `None` meaning `ok`.
pub(crate) type TransferResults = Vec<Option<CreateTransferErrorKind>>;

pub(crate) fn transfer_results(
    len: usize,
    reply: Result<(), CreateTransfersError>,
) -> Result<TransferResults, LedgerError> {
    let mut results = vec![None; len];
    match reply {
        Ok(()) => {}
        Err(CreateTransfersError::Send(e)) => return Err(e.into()),
        Err(CreateTransfersError::Api(api)) => {
            for e in api.as_slice() {
                results[e.index() as usize] = Some(e.kind());
            }
        }
        Err(other) => return Err(LedgerError::Unexpected(other.to_string())),
    }
    Ok(results)
}

/// The first result in a linked chain that is not `linked_event_failed`: the reason the
/// chain did not apply, or `None` when it applied.
pub(crate) fn chain_cause(
    results: &[Option<CreateTransferErrorKind>],
) -> Option<(usize, CreateTransferErrorKind)> {
    results.iter().enumerate().find_map(|(i, r)| {
        r.filter(|k| !matches!(k, CreateTransferErrorKind::LinkedEventFailed)).map(|k| (i, k))
    })
}

/// `exists` and its variants: an object with this id was created before.
pub(crate) fn is_exists(kind: CreateTransferErrorKind) -> bool {
    use CreateTransferErrorKind as K;
    matches!(
        kind,
        K::Exists
            | K::ExistsWithDifferentFlags
            | K::ExistsWithDifferentPendingId
            | K::ExistsWithDifferentTimeout
            | K::ExistsWithDifferentDebitAccountId
            | K::ExistsWithDifferentCreditAccountId
            | K::ExistsWithDifferentAmount
            | K::ExistsWithDifferentUserData128
            | K::ExistsWithDifferentUserData64
            | K::ExistsWithDifferentUserData32
            | K::ExistsWithDifferentLedger
            | K::ExistsWithDifferentCode
    )
}

/// Accounts are created idempotently: `exists` is fine, anything else is a conflict.
pub(crate) fn check_accounts(
    reply: Result<(), tb::error::CreateAccountsError>,
) -> Result<(), LedgerError> {
    use tb::error::CreateAccountsError as E;
    match reply {
        Ok(()) => Ok(()),
        Err(E::Send(e)) => Err(e.into()),
        Err(E::Api(api)) => {
            for e in api.as_slice() {
                if !matches!(e.kind(), CreateAccountErrorKind::Exists) {
                    return Err(LedgerError::Conflict(format!(
                        "account #{} of the batch: {:?}",
                        e.index(),
                        e.kind()
                    )));
                }
            }
            Ok(())
        }
        Err(other) => Err(LedgerError::Unexpected(other.to_string())),
    }
}
