//! The ledger crate against a real TigerBeetle: overselling, per-person caps, expiry,
//! atomic confirmation and idempotent replays.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use allot_ledger::*;
use allot_tests::tigerbeetle;

const GATEWAY: u64 = 1;

fn ledger() -> Ledger {
    Ledger::connect(0, &tigerbeetle::shared().address()).expect("connect")
}

/// Each test gets its own offering, so tests share one server without sharing state.
fn offering(supply: u128, lot: u128, min: u128, max: u128) -> OfferingSpec {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    OfferingSpec {
        number: NEXT.fetch_add(1, Ordering::Relaxed),
        zones: vec![ZoneSpec { number: 1, supply }],
        lot,
        min_quantity: min,
        max_per_person: max,
        gateways: vec![GATEWAY],
    }
}

fn hold_id(spec: &OfferingSpec, n: u128) -> HoldId {
    HoldId::new(((spec.number as u128) << 64) | n).unwrap()
}

/// A hold whose deadline is `seconds` from now (0: already passed), with no grace.
fn request(id: HoldId, person: u64, quantity: u128, seconds: u32) -> HoldRequest {
    let mut deadline = Deadline::after(seconds, 0);
    if seconds == 0 {
        deadline.unix_seconds = 0;
    }
    HoldRequest { id, zone: 1, person, quantity, deadline, allow_partial: false, partner: None }
}

/// Waits for a condition the cluster reaches by itself (expiry), failing after `limit`.
async fn eventually<F, Fut>(limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < limit, "condition not reached within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[allot_tests::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_oversell_under_contention() {
    let ledger = Arc::new(ledger());
    let spec = Arc::new(offering(1_000, 1, 1, 50));
    ledger.setup_offering(&spec).await.unwrap();

    let tasks: Vec<_> = (0..200u64)
        .map(|person| {
            let (ledger, spec) = (ledger.clone(), spec.clone());
            tokio::spawn(async move {
                let (mut held, mut sold_out) = (0u128, 0u32);
                for n in 0..50u128 {
                    let id = hold_id(&spec, (person as u128) * 1000 + n);
                    match ledger.hold(&spec, &request(id, person + 1, 1, 600)).await.unwrap() {
                        HoldOutcome::Held(h) => held += h.quantity,
                        HoldOutcome::SoldOut => sold_out += 1,
                        other => panic!("unexpected {other:?}"),
                    }
                }
                (held, sold_out)
            })
        })
        .collect();
    let mut held_total = 0;
    let mut sold_out_total = 0;
    for task in tasks {
        let (held, sold_out) = task.await.unwrap();
        held_total += held;
        sold_out_total += sold_out;
    }
    assert_eq!(held_total, 1_000);
    assert_eq!(sold_out_total, 200 * 50 - 1_000);

    let zone = ledger.zone_balances(&spec).await.unwrap()[0];
    assert_eq!((zone.supply, zone.held, zone.confirmed, zone.remaining), (1_000, 1_000, 0, 0));
    let mut holdings = 0;
    for person in 1..=200 {
        holdings += ledger.person_balance(&spec, person).await.unwrap().held;
    }
    assert_eq!(holdings, 1_000, "holdings must sum to what the stock says is held");
}

#[allot_tests::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_person_cap_holds_under_concurrency_and_comes_back() {
    let ledger = Arc::new(ledger());
    let spec = Arc::new(offering(1_000, 1, 1, 4));
    ledger.setup_offering(&spec).await.unwrap();
    let person = 7;

    let tasks: Vec<_> = (0..40u128)
        .map(|n| {
            let (ledger, spec) = (ledger.clone(), spec.clone());
            tokio::spawn(async move {
                let req = request(hold_id(&spec, n), person, 1, 600);
                ledger.hold(&spec, &req).await.unwrap()
            })
        })
        .collect();
    let mut held = vec![];
    for (n, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            HoldOutcome::Held(_) => held.push(n as u128),
            HoldOutcome::PersonLimitExceeded => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(held.len(), 4);
    let balance = ledger.person_balance(&spec, person).await.unwrap();
    assert_eq!((balance.held, balance.allowance), (4, 0));

    // Confirm one: it still counts against the cap.
    let payment = Payment { id: 1, gateway: GATEWAY, amount_satang: 100 };
    let confirmed = ledger.confirm(&spec, hold_id(&spec, held[0]), &payment).await.unwrap();
    assert_eq!(confirmed, ConfirmOutcome::Confirmed { replayed: false });
    let next = request(hold_id(&spec, 1_000), person, 1, 600);
    assert_eq!(ledger.hold(&spec, &next).await.unwrap(), HoldOutcome::PersonLimitExceeded);

    // Cancel one: the allowance comes back and a new hold (new id) succeeds.
    let cancelled = ledger.cancel(hold_id(&spec, held[1])).await.unwrap();
    assert_eq!(cancelled, CancelOutcome::Cancelled { replayed: false });
    let balance = ledger.person_balance(&spec, person).await.unwrap();
    assert_eq!((balance.held, balance.confirmed, balance.allowance), (2, 1, 1));
    let again = request(hold_id(&spec, 1_001), person, 1, 1);
    assert!(matches!(ledger.hold(&spec, &again).await.unwrap(), HoldOutcome::Held(_)));

    // That last hold expires by itself and gives the allowance back once more.
    eventually(Duration::from_secs(10), || {
        let (ledger, spec) = (ledger.clone(), spec.clone());
        async move { ledger.person_balance(&spec, person).await.unwrap().allowance == 1 }
    })
    .await;
}

#[allot_tests::test]
async fn holds_expire_by_themselves_and_late_confirms_move_no_money() {
    let ledger = Arc::new(ledger());
    let spec = Arc::new(offering(10, 1, 1, 10));
    ledger.setup_offering(&spec).await.unwrap();
    let id = hold_id(&spec, 1);
    let held = ledger.hold(&spec, &request(id, 1, 3, 1)).await.unwrap();
    assert!(matches!(held, HoldOutcome::Held(Held { quantity: 3, .. })));
    assert_eq!(ledger.zone_balances(&spec).await.unwrap()[0].remaining, 7);
    assert_eq!(ledger.hold_info(id).await.unwrap().unwrap().state, HoldState::Held);

    // No call from us: the cluster voids it at the deadline.
    eventually(Duration::from_secs(10), || {
        let (ledger, spec) = (ledger.clone(), spec.clone());
        async move {
            let zone = ledger.zone_balances(&spec).await.unwrap()[0];
            let person = ledger.person_balance(&spec, 1).await.unwrap();
            zone.remaining == 10 && zone.held == 0 && person.allowance == 10
        }
    })
    .await;
    assert_eq!(ledger.hold_info(id).await.unwrap().unwrap().state, HoldState::Expired);

    let payment = Payment { id: 9, gateway: GATEWAY, amount_satang: 30_000 };
    assert_eq!(ledger.confirm(&spec, id, &payment).await.unwrap(), ConfirmOutcome::HoldExpired);
    assert_eq!(ledger.money_balance(&spec).await.unwrap().deposits_satang, 0);
    assert_eq!(ledger.zone_balances(&spec).await.unwrap()[0].confirmed, 0);
    assert_eq!(ledger.cancel(id).await.unwrap(), CancelOutcome::AlreadyExpired);
}

#[allot_tests::test]
async fn confirm_moves_the_deposit_if_and_only_if_both_holds_post() {
    let ledger = ledger();
    let spec = offering(100, 1, 1, 100);
    ledger.setup_offering(&spec).await.unwrap();
    let payment = |id| Payment { id, gateway: GATEWAY, amount_satang: 5_000 };

    // Held -> confirmed: stock and quota posted, deposit moved, together.
    let a = hold_id(&spec, 1);
    ledger.hold(&spec, &request(a, 1, 5, 600)).await.unwrap();
    assert_eq!(
        ledger.confirm(&spec, a, &payment(1)).await.unwrap(),
        ConfirmOutcome::Confirmed { replayed: false }
    );
    let zone = ledger.zone_balances(&spec).await.unwrap()[0];
    assert_eq!((zone.held, zone.confirmed), (0, 5));
    assert_eq!(ledger.money_balance(&spec).await.unwrap().deposits_satang, 5_000);
    assert_eq!(ledger.hold_info(a).await.unwrap().unwrap().state, HoldState::Confirmed);

    // A second, different payment for the same hold moves nothing.
    assert_eq!(
        ledger.confirm(&spec, a, &payment(2)).await.unwrap(),
        ConfirmOutcome::ConfirmedByOtherPayment
    );
    assert_eq!(ledger.money_balance(&spec).await.unwrap().deposits_satang, 5_000);

    // Cancelled -> the confirm fails as a whole: no deposit, nothing posted.
    let b = hold_id(&spec, 2);
    ledger.hold(&spec, &request(b, 2, 5, 600)).await.unwrap();
    assert_eq!(ledger.cancel(b).await.unwrap(), CancelOutcome::Cancelled { replayed: false });
    assert_eq!(ledger.confirm(&spec, b, &payment(3)).await.unwrap(), ConfirmOutcome::HoldCancelled);
    assert_eq!(ledger.money_balance(&spec).await.unwrap().deposits_satang, 5_000);
    let zone = ledger.zone_balances(&spec).await.unwrap()[0];
    assert_eq!((zone.held, zone.confirmed, zone.remaining), (0, 5, 95));

    // An unknown hold is not confirmed and moves nothing.
    let ghost = hold_id(&spec, 99);
    assert_eq!(
        ledger.confirm(&spec, ghost, &payment(4)).await.unwrap(),
        ConfirmOutcome::HoldNotFound
    );

    // Money that confirms nothing goes to refunds payable, once per payment.
    assert!(ledger.record_refund(&spec, &payment(3)).await.unwrap());
    assert!(!ledger.record_refund(&spec, &payment(3)).await.unwrap());
    let money = ledger.money_balance(&spec).await.unwrap();
    assert_eq!((money.deposits_satang, money.refunds_payable_satang), (5_000, 5_000));
}

#[allot_tests::test]
async fn replaying_any_operation_changes_nothing() {
    let ledger = ledger();
    let spec = offering(100, 1, 1, 10);
    ledger.setup_offering(&spec).await.unwrap();
    ledger.setup_offering(&spec).await.unwrap();
    assert_eq!(ledger.zone_balances(&spec).await.unwrap()[0].supply, 100);

    let id = hold_id(&spec, 1);
    let req = request(id, 1, 4, 600);
    let first = ledger.hold(&spec, &req).await.unwrap();
    let HoldOutcome::Held(first) = first else { panic!("{first:?}") };
    for _ in 0..3 {
        let HoldOutcome::Held(again) = ledger.hold(&spec, &req).await.unwrap() else { panic!() };
        assert_eq!((again.quantity, again.replayed), (4, true));
        assert!(again.expires_at >= first.expires_at);
    }
    assert_eq!(ledger.zone_balances(&spec).await.unwrap()[0].held, 4);

    // The same id for a different request is recognised, not answered with the old hold.
    let other = HoldRequest { quantity: 5, ..req };
    assert_eq!(ledger.hold(&spec, &other).await.unwrap(), HoldOutcome::IdReused);

    let payment = Payment { id: 5, gateway: GATEWAY, amount_satang: 4_000 };
    ledger.confirm(&spec, id, &payment).await.unwrap();
    for _ in 0..3 {
        assert_eq!(
            ledger.confirm(&spec, id, &payment).await.unwrap(),
            ConfirmOutcome::Confirmed { replayed: true }
        );
    }
    assert_eq!(ledger.money_balance(&spec).await.unwrap().deposits_satang, 4_000);
    assert_eq!(ledger.zone_balances(&spec).await.unwrap()[0].confirmed, 4);

    let c = hold_id(&spec, 2);
    ledger.hold(&spec, &request(c, 2, 2, 600)).await.unwrap();
    ledger.cancel(c).await.unwrap();
    assert_eq!(ledger.cancel(c).await.unwrap(), CancelOutcome::Cancelled { replayed: true });
    let zone = ledger.zone_balances(&spec).await.unwrap()[0];
    assert_eq!((zone.held, zone.confirmed, zone.remaining), (0, 4, 96));

    // A refused hold stays refused on replay, even after stock comes back.
    let spec2 = offering(3, 1, 1, 10);
    ledger.setup_offering(&spec2).await.unwrap();
    // TigerBeetle refuses a failed id forever, which is told apart from a sellout: only a
    // new id can hold what may be left by then.
    let big = request(hold_id(&spec2, 1), 1, 4, 600);
    assert_eq!(ledger.hold(&spec2, &big).await.unwrap(), HoldOutcome::SoldOut);
    assert_eq!(ledger.hold(&spec2, &big).await.unwrap(), HoldOutcome::IdFailed);
}

#[allot_tests::test]
async fn partial_fill_takes_whole_lots_and_respects_the_minimum() {
    let ledger = ledger();
    let spec = offering(10_000, 500, 1_000, 8_000);
    ledger.setup_offering(&spec).await.unwrap();
    let take = |n, person, quantity| HoldRequest {
        allow_partial: true,
        ..request(hold_id(&spec, n), person, quantity, 600)
    };
    assert!(matches!(ledger.hold(&spec, &take(1, 1, 7_500)).await.unwrap(), HoldOutcome::Held(_)));
    // 2,500 left: asking 4,000 gets 2,500 (five lots).
    let HoldOutcome::Held(h) = ledger.hold(&spec, &take(2, 2, 4_000)).await.unwrap() else {
        panic!()
    };
    assert_eq!(h.quantity, 2_500);
    // The replay returns the same partial quantity.
    let HoldOutcome::Held(r) = ledger.hold(&spec, &take(2, 2, 4_000)).await.unwrap() else {
        panic!()
    };
    assert_eq!((r.quantity, r.replayed), (2_500, true));
    assert_eq!(ledger.hold(&spec, &take(3, 3, 1_000)).await.unwrap(), HoldOutcome::SoldOut);

    // Below-minimum leftovers are never handed out.
    let spec = offering(1_500, 500, 1_000, 8_000);
    ledger.setup_offering(&spec).await.unwrap();
    let take = |n, person, quantity| HoldRequest {
        allow_partial: true,
        ..request(hold_id(&spec, n), person, quantity, 600)
    };
    assert!(matches!(ledger.hold(&spec, &take(1, 1, 1_000)).await.unwrap(), HoldOutcome::Held(_)));
    assert_eq!(ledger.hold(&spec, &take(2, 2, 1_000)).await.unwrap(), HoldOutcome::SoldOut);
    assert_eq!(ledger.zone_balances(&spec).await.unwrap()[0].remaining, 500);

    // A person's remaining allowance caps a partial fill too.
    let spec = offering(10_000, 500, 1_000, 3_000);
    ledger.setup_offering(&spec).await.unwrap();
    let take = |n, person, quantity| HoldRequest {
        allow_partial: true,
        ..request(hold_id(&spec, n), person, quantity, 600)
    };
    ledger.hold(&spec, &take(1, 1, 1_500)).await.unwrap();
    let HoldOutcome::Held(h) = ledger.hold(&spec, &take(2, 1, 3_000)).await.unwrap() else {
        panic!()
    };
    assert_eq!(h.quantity, 1_500);
}

#[allot_tests::test]
async fn bad_requests_are_rejected_before_the_cluster() {
    let ledger = ledger();
    let spec = offering(10_000, 500, 1_000, 5_000);
    ledger.setup_offering(&spec).await.unwrap();
    let id = hold_id(&spec, 1);
    let cases = [
        (request(id, 1, 500, 60), HoldRejection::BelowMinimum),
        (request(id, 1, 1_200, 60), HoldRejection::NotLotMultiple),
        (request(id, 1, 5_500, 60), HoldRejection::AboveMaximum),
        (request(id, 1, 1_000, 0), HoldRejection::TimeoutOutOfRange),
        (HoldRequest { zone: 9, ..request(id, 1, 1_000, 60) }, HoldRejection::UnknownZone),
    ];
    for (req, rejection) in cases {
        assert_eq!(ledger.hold(&spec, &req).await.unwrap(), HoldOutcome::Rejected(rejection));
    }
    assert_eq!(ledger.zone_balances(&spec).await.unwrap()[0].remaining, 10_000);
    assert!(ledger.hold_info(id).await.unwrap().is_none());
}

#[allot_tests::test]
async fn people_prepared_in_bulk_get_their_full_allowance_once() {
    let ledger = ledger();
    let spec = offering(100_000, 1, 1, 3);
    ledger.setup_offering(&spec).await.unwrap();
    let people: Vec<u64> = (1..=10_000).collect();
    ledger.prepare_people(&spec, &people).await.unwrap();
    // Preparing again (another process, a retry) grants nothing twice.
    Ledger::connect(0, &tigerbeetle::shared().address())
        .unwrap()
        .prepare_people(&spec, &people[..100])
        .await
        .unwrap();
    for person in [1, 5_000, 10_000] {
        let balance = ledger.person_balance(&spec, person).await.unwrap();
        assert_eq!(balance.allowance, 3);
        let req = request(hold_id(&spec, person as u128), person, 3, 600);
        assert!(matches!(ledger.hold(&spec, &req).await.unwrap(), HoldOutcome::Held(_)));
        let more = request(hold_id(&spec, 100_000 + person as u128), person, 1, 600);
        assert_eq!(ledger.hold(&spec, &more).await.unwrap(), HoldOutcome::PersonLimitExceeded);
    }
}

#[allot_tests::test]
async fn readers_see_each_hold_placed_then_confirmed_or_cancelled_and_who_holds_what() {
    let ledger = ledger();
    let spec = offering(100, 1, 1, 10);
    ledger.setup_offering(&spec).await.unwrap();
    let (a, b, c) = (hold_id(&spec, 1), hold_id(&spec, 2), hold_id(&spec, 3));
    for (id, person, quantity) in [(a, 1, 2), (b, 2, 3), (c, 3, 4)] {
        ledger.hold(&spec, &request(id, person, quantity, 600)).await.unwrap();
    }
    let payment = Payment { id: 7, gateway: GATEWAY, amount_satang: 2_000 };
    let confirmed = ledger.confirm(&spec, a, &payment).await.unwrap();
    assert_eq!(confirmed, ConfirmOutcome::Confirmed { replayed: false });
    assert_eq!(ledger.cancel(b).await.unwrap(), CancelOutcome::Cancelled { replayed: false });

    // What the projector and the reconciliation read: every event once, oldest first.
    let events = ledger.hold_events(spec.number, UNIX_EPOCH).await.unwrap();
    assert_eq!(events.iter().map(HoldEvent::id).collect::<Vec<_>>(), [a, b, c, a, b]);
    assert!(events.windows(2).all(|w| w[0].timestamp() < w[1].timestamp()));
    let placed: Vec<(u64, u16, u128)> = events
        .iter()
        .filter_map(|e| match e {
            HoldEvent::Placed(h) => Some((h.person, h.zone, h.quantity)),
            _ => None,
        })
        .collect();
    assert_eq!(placed, [(1, 1, 2), (2, 1, 3), (3, 1, 4)]);
    assert!(matches!(events[3], HoldEvent::Confirmed { id, .. } if id == a));
    assert!(matches!(events[4], HoldEvent::Cancelled { id, .. } if id == b));
    // After the last event there is nothing more: a reader there is caught up.
    let last = events[4].timestamp();
    assert!(ledger.hold_events(spec.number, last).await.unwrap().is_empty());
    // The hold a reader decodes is the hold `hold_info` reads.
    let HoldEvent::Placed(c_placed) = events[2] else { panic!("{:?}", events[2]) };
    let info = ledger.hold_info(c).await.unwrap().unwrap();
    assert_eq!((info.expires_at, info.fingerprint), (c_placed.expires_at, c_placed.fingerprint));

    // The deposit, found among every offering's money by the offering it was booked to.
    let deposits = ledger.money_events(MoneyKind::Deposit, UNIX_EPOCH).await.unwrap();
    let ours: Vec<(u128, u128)> = deposits
        .iter()
        .filter(|e| e.offering == spec.number)
        .map(|e| (e.payment, e.amount_satang))
        .collect();
    assert_eq!(ours, [(7, 2_000)]);

    // What each person holds and owns, in the order asked; a stranger holds nothing.
    let holdings = ledger.holdings(&spec, &[3, 1, 2, 99]).await.unwrap();
    let seen: Vec<(u64, u128, u128)> =
        holdings.iter().map(|h| (h.person, h.held, h.confirmed)).collect();
    assert_eq!(seen, [(3, 4, 0), (1, 0, 2), (2, 0, 0), (99, 0, 0)]);
}

/// A cluster that is not there: the client would retry forever, so every request must
/// come back `Unavailable` once the ledger's request timeout has passed, and a write
/// retried there later must not have happened twice (there is nothing to happen).
#[allot_tests::test]
async fn a_dead_cluster_answers_unavailable_within_the_request_timeout() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let timeout = Duration::from_millis(500);
    let dead = Ledger::connect_with_timeout(0, &port.to_string(), timeout).unwrap();
    let spec = offering(10, 1, 1, 5);
    // The test's own bound is far above the ledger's, so only a hang trips it.
    let started = Instant::now();
    let ping = tokio::time::timeout(Duration::from_secs(20), dead.ping()).await;
    let ping = ping.expect("the ping hung: the request timeout did not bound it");
    assert!(matches!(ping, Err(LedgerError::Unavailable(_))), "{ping:?}");
    let hold = tokio::time::timeout(
        Duration::from_secs(20),
        dead.hold(&spec, &request(hold_id(&spec, 1), 1, 1, 60)),
    )
    .await
    .expect("the hold hung: the request timeout did not bound it");
    assert!(matches!(hold, Err(LedgerError::Unavailable(_))), "{hold:?}");
    let waited = started.elapsed();
    assert!(waited >= 2 * timeout && waited < Duration::from_secs(10), "{waited:?}");
}

/// A partner's hold: the chain's third link draws on the partner's allocation, which the
/// ledger enforces exactly as it does the person's cap; confirm and cancel carry the third
/// link along; a direct hold is untouched by any of it.
#[allot_tests::test]
async fn a_partner_hold_draws_on_its_allocation_and_the_persons_cap_together() {
    let ledger = ledger();
    // Units are baht of face value, lot 1,000, cap 50,000,000 per person (the seeded bond).
    let spec = offering(1_000_000_000, 1_000, 5_000, 50_000_000);
    ledger.setup_offering(&spec).await.unwrap();
    const PARTNER: u16 = 7;
    ledger.set_partner_allocation(&spec, PARTNER, 3_000_000).await.unwrap();
    // Granting the same allocation again is a no-op; another amount is refused.
    ledger.set_partner_allocation(&spec, PARTNER, 3_000_000).await.unwrap();
    assert!(matches!(
        ledger.set_partner_allocation(&spec, PARTNER, 4_000_000).await,
        Err(LedgerError::Conflict(_))
    ));
    let via_partner = |n, person, quantity| HoldRequest {
        partner: Some(PARTNER),
        ..request(hold_id(&spec, n), person, quantity, 600)
    };

    // Person 1 holds 49,000,000 directly; through the partner 1,000,000 more fits, one lot
    // more does not (the person's cap, across both channels).
    let direct = request(hold_id(&spec, 1), 1, 49_000_000, 600);
    assert!(matches!(ledger.hold(&spec, &direct).await.unwrap(), HoldOutcome::Held(_)));
    let first = via_partner(2, 1, 1_000_000);
    assert!(matches!(ledger.hold(&spec, &first).await.unwrap(), HoldOutcome::Held(_)));
    assert_eq!(
        ledger.hold(&spec, &via_partner(3, 1, 1_000)).await.unwrap(),
        HoldOutcome::PersonLimitExceeded
    );
    // The minimum is the person's: someone holding nothing cannot take one lot...
    let lone = request(hold_id(&spec, 30), 30, 1_000, 600);
    assert_eq!(
        ledger.hold(&spec, &lone).await.unwrap(),
        HoldOutcome::Rejected(HoldRejection::BelowMinimum)
    );
    // ...while someone holding at least the minimum tops up by a lot.
    let base = request(hold_id(&spec, 31), 31, 5_000, 600);
    assert!(matches!(ledger.hold(&spec, &base).await.unwrap(), HoldOutcome::Held(_)));
    let topup = request(hold_id(&spec, 32), 31, 1_000, 600);
    assert!(matches!(ledger.hold(&spec, &topup).await.unwrap(), HoldOutcome::Held(_)));
    // A retry of the partner's call is the same hold, held once.
    let HoldOutcome::Held(again) = ledger.hold(&spec, &first).await.unwrap() else { panic!() };
    assert!(again.replayed);
    assert_eq!(ledger.person_balance(&spec, 1).await.unwrap().held, 50_000_000);
    let balance = ledger.partner_balance(&spec, PARTNER).await.unwrap().unwrap();
    assert_eq!((balance.held, balance.remaining), (1_000_000, 2_000_000));

    // Past the allocation: refused by the third link, nothing held anywhere.
    let stock_before = ledger.zone_balances(&spec).await.unwrap()[0].remaining;
    assert_eq!(
        ledger.hold(&spec, &via_partner(4, 2, 2_001_000)).await.unwrap(),
        HoldOutcome::PartnerAllocationExceeded
    );
    assert_eq!(ledger.zone_balances(&spec).await.unwrap()[0].remaining, stock_before);
    assert_eq!(ledger.person_balance(&spec, 2).await.unwrap().held, 0);
    let exact = via_partner(5, 2, 2_000_000);
    assert!(matches!(ledger.hold(&spec, &exact).await.unwrap(), HoldOutcome::Held(_)));
    let info = ledger.hold_info(exact.id).await.unwrap().unwrap();
    assert_eq!((info.partner, info.person), (Some(PARTNER), 2));
    assert_eq!(ledger.hold_info(direct.id).await.unwrap().unwrap().partner, None);

    // Cancelling gives the allocation back with the stock and the cap.
    assert!(matches!(ledger.cancel(exact.id).await.unwrap(), CancelOutcome::Cancelled { .. }));
    let balance = ledger.partner_balance(&spec, PARTNER).await.unwrap().unwrap();
    assert_eq!((balance.held, balance.remaining), (1_000_000, 2_000_000));
    // Confirming posts all three links in one chain.
    let payment = Payment { id: 77, gateway: GATEWAY, amount_satang: 100 };
    let confirmed = ledger.confirm(&spec, first.id, &payment).await.unwrap();
    assert_eq!(confirmed, ConfirmOutcome::Confirmed { replayed: false });
    let balance = ledger.partner_balance(&spec, PARTNER).await.unwrap().unwrap();
    assert_eq!((balance.held, balance.confirmed, balance.remaining), (0, 1_000_000, 2_000_000));
    let person = ledger.person_balance(&spec, 1).await.unwrap();
    assert_eq!((person.held, person.confirmed), (49_000_000, 1_000_000));
    // A partner with no allocation here cannot hold at all.
    let stranger = HoldRequest { partner: Some(8), ..request(hold_id(&spec, 6), 3, 5_000, 600) };
    assert_eq!(
        ledger.hold(&spec, &stranger).await.unwrap(),
        HoldOutcome::PartnerAllocationExceeded
    );
}
