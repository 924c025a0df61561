//! A sale's opening through the waiting room, over HTTP (driven by `./ops/loadtest`):
//! `--fans` simulated fans join the queue of one queued concert round, poll their status
//! until admitted, then reserve 1 to `max_per_person` seats each with their admission token.
//!
//! Each fan does what a browser does: `GET /v1/challenge`, solve it, `POST .../queue`, then
//! `GET .../queue/status` with the ticket at most once per `--poll-interval-ms`; once
//! admitted, `POST .../reservations` (a random quantity, zones in a random order, partial
//! fills accepted) with `X-Queue-Admission` and an Idempotency-Key. A fan whose zones are all
//! sold out stops. One fan in ten is greedy and asks for a full second allowance under a
//! new key; the per-person cap must refuse it.
//!
//! Afterwards, from TigerBeetle itself (zones and every fan's holding account), from the
//! Postgres projection and from the driver's own count of 201s: exactly the round's supply
//! is held or confirmed, and nobody holds above the per-person maximum. Any failed check
//! exits non-zero.
//!
//! Joining and polling run side by side on separate lanes, as they do in a real opening;
//! the driver, the API and both stores share the machine's cores, so every rate here is a
//! lower bound of what the API does alone.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use allot_api::fairness::pow::{self, Challenge};
use allot_api::identity::tokens::TokenKeys;
use allot_api::identity::Role;
use allot_ledger::{Ledger, OfferingSpec, ZoneSpec};
use clap::Parser;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::json;

#[derive(Clone, Debug, Parser)]
#[command(
    about = "Fans join a queued round, wait to be admitted, and reserve; then the books are checked"
)]
struct Args {
    /// Base URL of a running API.
    #[arg(long)]
    api: String,
    /// The API's token secret (hex): fans get signed tokens without registering.
    #[arg(long)]
    token_secret: String,
    /// The API's Postgres, for the projection and the waiting room's own record.
    #[arg(long)]
    database_url: String,
    /// The API's TigerBeetle, checked directly rather than through the API.
    #[arg(long)]
    tb_addresses: String,
    #[arg(long, default_value_t = 0)]
    tb_cluster: u128,
    /// The queued offering (its supply is what must be sold, exactly).
    #[arg(long)]
    offering: String,
    #[arg(long, default_value_t = 100_000)]
    fans: u64,
    /// Joins in flight at once.
    #[arg(long, default_value_t = 128)]
    join_concurrency: usize,
    /// Status reads and the reservations that follow them, in flight at once.
    #[arg(long, default_value_t = 256)]
    poll_concurrency: usize,
    /// A waiting fan reads their status at most this often (the live stream's cadence).
    #[arg(long, default_value_t = 1_000)]
    poll_interval_ms: u64,
    /// Share of fans who try to reserve a second full allowance.
    #[arg(long, default_value_t = 10)]
    greedy_percent: u32,
    /// Seeds every fan's choices: the same seed asks for the same seats.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The API's process id, for its memory.
    #[arg(long)]
    api_pid: Option<u32>,
    /// The admission rate the API was configured with, printed next to the observed one.
    #[arg(long)]
    admissions_per_second: Option<f64>,
    /// Give up (and fail) when fans are still waiting after this long.
    #[arg(long, default_value_t = 900)]
    timeout_seconds: u64,
    #[arg(long)]
    json: bool,
}

/// Fans' user ids start here: far from the dev admin and any id a person would get.
const FAN_ID_BASE: i64 = 10_000_000;
const RETRIES: u32 = 5;

fn main() -> ExitCode {
    let args = Args::parse();
    // One thread: the server and its stores need the other cores more than we do.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(run(args.clone())) {
        Ok(report) => {
            report.print(args.json);
            if report.checks.iter().all(|c| c.ok) {
                ExitCode::SUCCESS
            } else {
                eprintln!("loadtest_queue: a check failed");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("loadtest_queue: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Deserialize)]
struct ZoneConfig {
    id: String,
    supply: u64,
}

#[derive(Debug, Deserialize)]
struct OfferingView {
    zones: Vec<ZoneConfig>,
    lot: u64,
    min_quantity: u64,
    max_per_person: u64,
    #[serde(default)]
    queue: bool,
}

#[derive(Debug, Deserialize)]
struct JoinBody {
    ticket: String,
    position: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct StatusBody {
    status: String,
    serving: u64,
    admission_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ReservationBody {
    quantity: u64,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: String,
}

/// A fan between joining and being done.
#[derive(Debug)]
struct Fan {
    index: u64,
    token: String,
    ticket: String,
}

impl Fan {
    fn user_id(index: u64) -> i64 {
        FAN_ID_BASE + index as i64
    }
}

/// A waiting fan and when they read their status next; ordered by that time, then fan.
#[derive(Debug)]
struct Due {
    at: Instant,
    fan: Fan,
}

impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        (self.at, self.fan.index) == (other.at, other.fan.index)
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Due) -> std::cmp::Ordering {
        (self.at, self.fan.index).cmp(&(other.at, other.fan.index))
    }
}

/// What every lane shares.
#[derive(Debug)]
struct Shared {
    args: Args,
    client: reqwest::Client,
    keys: TokenKeys,
    offering: OfferingView,
    challenge_url: String,
    join_url: String,
    status_url: String,
    reserve_url: String,
    next_join: AtomicU64,
    /// Waiting fans, soonest due first for their next status read.
    waiting: Mutex<BinaryHeap<Reverse<Due>>>,
    /// Fans not done yet (not joined, waiting, or reserving).
    unfinished: AtomicU64,
    /// Zones some fan has found sold out: others skip them, as the sale page would show.
    sold_out: Vec<AtomicBool>,
    serving_seen: AtomicU64,
    joined: AtomicU64,
    /// The API's memory when the last fan had joined: the whole queue is in it by then.
    memory_joined: Mutex<Option<Memory>>,
    started: Instant,
    deadline: Instant,
}

/// One lane's tallies, merged at the end.
#[derive(Debug, Default)]
struct Tally {
    joins: u64,
    joins_prequeue: u64,
    join_us: Vec<u32>,
    join_window: Window,
    prequeue_window: Window,
    back_window: Window,
    join_failed: u64,
    status_reads: u64,
    status_window: Window,
    /// Status reads finished in each second of the run, for the busiest stretch.
    reads_per_second: Vec<u64>,
    admitted: u64,
    expired: u64,
    first_admitted: Option<SystemTime>,
    hold_us: Vec<u32>,
    last_hold: Option<SystemTime>,
    fans_holding: u64,
    fans_sold_out: u64,
    greedy_tries: u64,
    greedy_refused: u64,
    /// (fan, seats) of every 201 this lane saw.
    held: Vec<(u64, u64)>,
    errors: BTreeMap<String, u64>,
}

/// First start and last end of a kind of request.
#[derive(Clone, Copy, Debug, Default)]
struct Window {
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Window {
    fn note(&mut self, start: Instant, end: Instant) {
        self.first = Some(self.first.map_or(start, |f| f.min(start)));
        self.last = Some(self.last.map_or(end, |l| l.max(end)));
    }

    fn merge(&mut self, other: Window) {
        if let (Some(f), Some(l)) = (other.first, other.last) {
            self.note(f, l);
        }
    }

    fn seconds(&self) -> f64 {
        match (self.first, self.last) {
            (Some(f), Some(l)) => l.duration_since(f).as_secs_f64(),
            _ => 0.0,
        }
    }
}

impl Tally {
    fn error(&mut self, what: &str) {
        *self.errors.entry(what.to_owned()).or_default() += 1;
    }

    fn merge(&mut self, o: Tally) {
        self.joins += o.joins;
        self.joins_prequeue += o.joins_prequeue;
        self.join_us.extend(o.join_us);
        self.join_window.merge(o.join_window);
        self.prequeue_window.merge(o.prequeue_window);
        self.back_window.merge(o.back_window);
        self.join_failed += o.join_failed;
        self.status_reads += o.status_reads;
        self.status_window.merge(o.status_window);
        if self.reads_per_second.len() < o.reads_per_second.len() {
            self.reads_per_second.resize(o.reads_per_second.len(), 0);
        }
        for (mine, theirs) in self.reads_per_second.iter_mut().zip(o.reads_per_second) {
            *mine += theirs;
        }
        self.admitted += o.admitted;
        self.expired += o.expired;
        self.first_admitted = match (self.first_admitted, o.first_admitted) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.hold_us.extend(o.hold_us);
        self.last_hold = self.last_hold.max(o.last_hold);
        self.fans_holding += o.fans_holding;
        self.fans_sold_out += o.fans_sold_out;
        self.greedy_tries += o.greedy_tries;
        self.greedy_refused += o.greedy_refused;
        self.held.extend(o.held);
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

async fn run(args: Args) -> Result<Report, String> {
    let lanes = args.join_concurrency + args.poll_concurrency;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(lanes)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    // Fans' tokens outlive the run: a slow machine must not see them lapse mid-sale.
    let keys = TokenKeys::new(&hex::decode(&args.token_secret).map_err(|e| e.to_string())?, 7_200);
    let offering = wait_for_offering(&client, &args).await?;
    if !offering.queue {
        return Err(format!("{} has no waiting room (queue = false)", args.offering));
    }
    let supply: u64 = offering.zones.iter().map(|z| z.supply).sum();
    let api = args.api.trim_end_matches('/').to_owned();
    let base = format!("{api}/v1/offerings/{}", args.offering);
    let shared = Arc::new(Shared {
        client,
        keys,
        challenge_url: format!("{api}/v1/challenge"),
        join_url: format!("{base}/queue"),
        status_url: format!("{base}/queue/status"),
        reserve_url: format!("{base}/reservations"),
        next_join: AtomicU64::new(0),
        waiting: Mutex::new(BinaryHeap::new()),
        unfinished: AtomicU64::new(args.fans),
        sold_out: offering.zones.iter().map(|_| AtomicBool::new(false)).collect(),
        serving_seen: AtomicU64::new(0),
        joined: AtomicU64::new(0),
        memory_joined: Mutex::new(None),
        started: Instant::now(),
        deadline: Instant::now() + Duration::from_secs(args.timeout_seconds),
        offering,
        args: args.clone(),
    });
    let pow_cost = pow_cost(&shared).await?;
    let rss_start = api_memory(args.api_pid);

    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.join_concurrency {
        tasks.push(tokio::spawn(join_lane(shared.clone())));
    }
    for _ in 0..args.poll_concurrency {
        tasks.push(tokio::spawn(poll_lane(shared.clone())));
    }
    let mut tally = Tally::default();
    for t in tasks {
        tally.merge(t.await.map_err(|e| e.to_string())?);
    }
    let run_seconds = start.elapsed().as_secs_f64();
    let rss_end = api_memory(args.api_pid);
    let rss_joined = *shared.memory_joined.lock().expect("not poisoned");
    let unfinished = shared.unfinished.load(Ordering::Acquire);
    if unfinished > 0 {
        eprintln!(
            "loadtest_queue: {unfinished} fans not done after {}s; serving counter last seen at {}",
            args.timeout_seconds,
            shared.serving_seen.load(Ordering::Acquire)
        );
    }

    let db = connect(&args.database_url).await?;
    let room = waiting_room(&db, &args.offering).await?;
    let held_back = held_back_ticks(&shared).await;
    let books = books(&shared, &db, &tally, supply).await?;

    let mut checks = vec![
        Check::new("every fan done", unfinished == 0, format!("{unfinished} left")),
        Check::new(
            "one queue entry per fan",
            room.entries == args.fans,
            format!("{} entries for {} fans", room.entries, args.fans),
        ),
    ];
    checks.extend(books.checks);

    let pct = |v: &mut Vec<u32>, p: f64| -> f64 {
        v.sort_unstable();
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .map_or(0.0, |us| f64::from(*us) / 1000.0)
    };
    let rate = |n: u64, w: &Window| if w.seconds() > 0.0 { n as f64 / w.seconds() } else { 0.0 };
    let join_rate = rate(tally.joins, &tally.join_window);
    let joins_back = tally.joins - tally.joins_prequeue;
    let status_rate = rate(tally.status_reads, &tally.status_window);
    let after_open = |t: Option<SystemTime>| match (t, room.opens_at) {
        (Some(t), Some(open)) => unix(t) - open,
        _ => f64::NAN,
    };
    // The busiest five seconds: while many wait, reads run as fast as the API answers.
    let peak_reads = tally.reads_per_second.windows(5).map(|w| w.iter().sum::<u64>()).max();
    let status_rate_peak = peak_reads.map_or(status_rate, |n| n as f64 / 5.0);
    let errors: u64 = tally.errors.values().sum();
    let mut metrics: Metrics = vec![
        ("fans", args.fans as f64, "fans"),
        ("seats", supply as f64, "seats"),
        ("pow_cost", pow_cost as f64, "iterations"),
        ("join_rate", join_rate, "joins/s"),
        ("join_p50_ms", pct(&mut tally.join_us, 0.50), "ms"),
        ("join_p99_ms", pct(&mut tally.join_us, 0.99), "ms"),
        ("joins_prequeue", tally.joins_prequeue as f64, "fans"),
        ("join_rate_prequeue", rate(tally.joins_prequeue, &tally.prequeue_window), "joins/s"),
        ("joins_after_opening", joins_back as f64, "fans"),
        ("join_rate_after_opening", rate(joins_back, &tally.back_window), "joins/s"),
        ("prequeue_drawn", room.prequeue as f64, "fans"),
        ("draw_seconds_after_opening", room.shuffled_after_open, "s"),
        ("first_admission_seen_after_opening", after_open(tally.first_admitted), "s"),
        ("sold_out_after_opening", after_open(tally.last_hold), "s"),
        ("status_read_rate", status_rate, "reads/s"),
        ("status_read_rate_peak_5s", status_rate_peak, "reads/s"),
        ("status_reads", tally.status_reads as f64, "reads"),
        ("admission_rate", room.admission_rate, "admissions/s"),
    ];
    if let Some(configured) = args.admissions_per_second {
        metrics.push(("admission_rate_configured", configured, "admissions/s"));
    }
    metrics.extend([
        ("admission_held_back_ticks", held_back.unwrap_or(f64::NAN), "ticks"),
        ("admitted_seen", tally.admitted as f64, "fans"),
        ("admission_to_hold_p50_ms", pct(&mut tally.hold_us, 0.50), "ms"),
        ("admission_to_hold_p99_ms", pct(&mut tally.hold_us, 0.99), "ms"),
        ("fans_holding", tally.fans_holding as f64, "fans"),
        ("fans_sold_out", tally.fans_sold_out as f64, "fans"),
        ("greedy_refused", tally.greedy_refused as f64, "requests"),
        ("greedy_tries", tally.greedy_tries as f64, "requests"),
        ("seats_held_or_confirmed", books.ledger_total as f64, "seats"),
        ("max_seats_per_fan", books.ledger_max as f64, "seats"),
        ("run_seconds", run_seconds, "s"),
        ("api_rss_start_mib", rss_start.map_or(f64::NAN, |m| m.rss_mib), "MiB"),
        ("api_rss_all_joined_mib", rss_joined.map_or(f64::NAN, |m| m.rss_mib), "MiB"),
        ("api_rss_mib", rss_end.map_or(f64::NAN, |m| m.rss_mib), "MiB"),
        ("api_peak_rss_mib", rss_end.map_or(f64::NAN, |m| m.hwm_mib), "MiB"),
        ("errors", errors as f64, "requests"),
        ("checks_failed", checks.iter().filter(|c| !c.ok).count() as f64, "checks"),
    ]);
    Ok(Report { metrics, checks, errors: tally.errors, pow_cost })
}

/// The offering as the API serves it; waits for the API to come up.
async fn wait_for_offering(client: &reqwest::Client, args: &Args) -> Result<OfferingView, String> {
    let url = format!("{}/v1/offerings/{}", args.api.trim_end_matches('/'), args.offering);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match client.get(&url).send().await {
            Ok(res) if res.status() == 200 => {
                return res.json().await.map_err(|e| format!("reading {url}: {e}"));
            }
            Ok(res) if Instant::now() > until => {
                return Err(format!("{url}: {}", res.text().await.unwrap_or_default()));
            }
            Err(e) if Instant::now() > until => return Err(format!("{url}: {e}")),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The proof of work the API asks for, as its challenges state it.
async fn pow_cost(shared: &Shared) -> Result<u32, String> {
    let challenge: Challenge = shared
        .client
        .get(&shared.challenge_url)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    Ok(challenge.parameters.cost)
}

async fn join_lane(shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    loop {
        let index = shared.next_join.fetch_add(1, Ordering::Relaxed);
        if index >= shared.args.fans || Instant::now() > shared.deadline {
            return tally;
        }
        let token = shared.keys.issue(Fan::user_id(index), Role::Citizen, false);
        let start = Instant::now();
        let mut joined = None;
        for attempt in 0..RETRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            // A fresh challenge each attempt: a solution is spent once the API has seen it.
            match join(&shared, &token).await {
                Ok(body) => {
                    joined = Some(body);
                    break;
                }
                Err(e) => tally.error(&format!("join: {e}")),
            }
        }
        let end = Instant::now();
        let Some(body) = joined else {
            tally.join_failed += 1;
            shared.unfinished.fetch_sub(1, Ordering::AcqRel);
            continue;
        };
        tally.joins += 1;
        if shared.joined.fetch_add(1, Ordering::AcqRel) + 1 == shared.args.fans {
            *shared.memory_joined.lock().expect("not poisoned") = api_memory(shared.args.api_pid);
        }
        tally.joins_prequeue += u64::from(body.position.is_none());
        tally.join_us.push(micros(end - start));
        tally.join_window.note(start, end);
        match body.position {
            None => tally.prequeue_window.note(start, end),
            Some(_) => tally.back_window.note(start, end),
        }
        // A browser shows the status as soon as it has joined.
        let fan = Fan { index, token, ticket: body.ticket };
        requeue(&shared, fan, end);
    }
}

async fn join(shared: &Shared, token: &str) -> Result<JoinBody, String> {
    let res = shared.client.get(&shared.challenge_url).send().await.map_err(transport)?;
    if res.status() != 200 {
        return Err(format!("challenge {}", code(res).await));
    }
    let challenge: Challenge = res.json().await.map_err(|e| e.to_string())?;
    let solution = pow::solve(&challenge);
    let res = shared
        .client
        .post(&shared.join_url)
        .bearer_auth(token)
        .header("X-Pow", solution)
        .send()
        .await
        .map_err(transport)?;
    match res.status().as_u16() {
        200 | 201 => res.json().await.map_err(|e| e.to_string()),
        _ => Err(code(res).await),
    }
}

async fn poll_lane(shared: Arc<Shared>) -> Tally {
    let mut tally = Tally::default();
    let interval = Duration::from_millis(shared.args.poll_interval_ms);
    loop {
        if shared.unfinished.load(Ordering::Acquire) == 0 || Instant::now() > shared.deadline {
            return tally;
        }
        let next = {
            let mut waiting = shared.waiting.lock().expect("not poisoned");
            let now = Instant::now();
            match waiting.peek() {
                Some(Reverse(next)) if next.at <= now => Ok(waiting.pop().expect("a peek").0.fan),
                // Nobody is due yet: come back when the first one is (or soon, for new joins).
                Some(Reverse(next)) => Err((next.at - now).min(Duration::from_millis(50))),
                None => Err(Duration::from_millis(20)),
            }
        };
        let fan = match next {
            Ok(fan) => fan,
            Err(wait) => {
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let start = Instant::now();
        let res = shared
            .client
            .get(&shared.status_url)
            .header("X-Queue-Ticket", &fan.ticket)
            .send()
            .await;
        let status = match res {
            Ok(res) if res.status() == 200 => {
                res.json::<StatusBody>().await.map_err(|e| e.to_string())
            }
            Ok(res) => Err(format!("status: {}", code(res).await)),
            Err(e) => Err(format!("status: {}", transport(e))),
        };
        let end = Instant::now();
        tally.status_reads += 1;
        tally.status_window.note(start, end);
        let second = end.duration_since(shared.started).as_secs() as usize;
        if tally.reads_per_second.len() <= second {
            tally.reads_per_second.resize(second + 1, 0);
        }
        tally.reads_per_second[second] += 1;
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                tally.error(&e);
                requeue(&shared, fan, end + interval);
                continue;
            }
        };
        shared.serving_seen.fetch_max(status.serving, Ordering::AcqRel);
        match (status.status.as_str(), status.admission_token) {
            ("admitted", Some(admission)) => {
                tally.admitted += 1;
                let seen = SystemTime::now();
                tally.first_admitted = Some(tally.first_admitted.map_or(seen, |t| t.min(seen)));
                reserve(&shared, &fan, &admission, end, &mut tally).await;
                shared.unfinished.fetch_sub(1, Ordering::AcqRel);
            }
            ("waiting", _) => requeue(&shared, fan, end + interval),
            ("expired", _) => {
                // Admitted but never seen in time: the poll cadence lost this fan their slot.
                tally.expired += 1;
                tally.error("status: expired before seen");
                shared.unfinished.fetch_sub(1, Ordering::AcqRel);
            }
            (other, _) => {
                tally.error(&format!("status: {other}"));
                requeue(&shared, fan, end + interval);
            }
        }
    }
}

fn requeue(shared: &Shared, fan: Fan, at: Instant) {
    shared.waiting.lock().expect("not poisoned").push(Reverse(Due { at, fan }));
}

/// An admitted fan reserves: their quantity in their preferred zone, or the next zone when
/// it is sold out, taking a partial fill rather than nothing. Greedy fans then ask again.
async fn reserve(shared: &Shared, fan: &Fan, admission: &str, seen: Instant, tally: &mut Tally) {
    let o = &shared.offering;
    let mut rng =
        StdRng::seed_from_u64(shared.args.seed ^ fan.index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let lots = o.max_per_person / o.lot;
    let min_lots = o.min_quantity.div_ceil(o.lot);
    let quantity = rng.gen_range(min_lots..=lots) * o.lot;
    let mut zones: Vec<usize> = (0..o.zones.len()).collect();
    zones.shuffle(&mut rng);
    let greedy = rng.gen_range(0..100) < shared.args.greedy_percent;
    let open: Vec<usize> =
        zones.iter().copied().filter(|&z| !shared.sold_out[z].load(Ordering::Acquire)).collect();
    // Everything shows sold out: the fan still tries their first choice once, and stops.
    let tries = if open.is_empty() { vec![zones[0]] } else { open };
    for zone in tries {
        let key = format!("loadtest-{}-{}", fan.index, o.zones[zone].id);
        match post_reservation(shared, fan, admission, &key, zone, quantity, true).await {
            Ok(seats) => {
                tally.hold_us.push(micros(seen.elapsed()));
                tally.last_hold = tally.last_hold.max(Some(SystemTime::now()));
                tally.fans_holding += 1;
                tally.held.push((fan.index, seats));
                if greedy {
                    greedy_again(shared, fan, admission, zone, tally).await;
                }
                return;
            }
            Err(code) if code == "sold_out" => {
                shared.sold_out[zone].store(true, Ordering::Release);
            }
            Err(code) => {
                tally.error(&format!("reserve: {code}"));
                return;
            }
        }
    }
    tally.fans_sold_out += 1;
}

/// A second full allowance on top of a hold: the ledger's per-person quota must refuse it.
async fn greedy_again(shared: &Shared, fan: &Fan, admission: &str, zone: usize, tally: &mut Tally) {
    tally.greedy_tries += 1;
    let key = format!("loadtest-{}-more", fan.index);
    let max = shared.offering.max_per_person;
    match post_reservation(shared, fan, admission, &key, zone, max, false).await {
        Ok(seats) => {
            // Over the cap: the books check will count it against the per-fan maximum.
            tally.held.push((fan.index, seats));
        }
        Err(code) if code == "person_limit_exceeded" || code == "sold_out" => {
            tally.greedy_refused += 1;
        }
        Err(code) => tally.error(&format!("greedy: {code}")),
    }
}

/// POSTs one reservation, retrying transport failures under the same key (the same hold);
/// `Ok(seats held)` on 201, `Err(code)` otherwise.
async fn post_reservation(
    shared: &Shared,
    fan: &Fan,
    admission: &str,
    key: &str,
    zone: usize,
    quantity: u64,
    allow_partial: bool,
) -> Result<u64, String> {
    let body = json!({
        "quantity": quantity,
        "zone": shared.offering.zones[zone].id,
        "allow_partial": allow_partial,
    });
    let mut last = String::new();
    for attempt in 0..RETRIES {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        let res = shared
            .client
            .post(&shared.reserve_url)
            .bearer_auth(&fan.token)
            .header("X-Queue-Admission", admission)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await;
        match res {
            Ok(res) if res.status() == 201 => {
                let held: ReservationBody = res.json().await.map_err(|e| e.to_string())?;
                return Ok(held.quantity);
            }
            // The ledger did not answer in time: the same key is safe to send again.
            Ok(res) if res.status() == 503 => last = code(res).await,
            Ok(res) => return Err(code(res).await),
            Err(e) => last = transport(e),
        }
    }
    Err(last)
}

async fn code(res: reqwest::Response) -> String {
    let status = res.status().as_u16();
    match res.json::<ErrorBody>().await {
        Ok(body) => body.code,
        Err(_) => format!("http_{status}"),
    }
}

fn transport(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "client_timeout".into()
    } else {
        "connection_error".into()
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, conn) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(client)
}

/// The waiting room as Postgres recorded it.
#[derive(Debug)]
struct Room {
    entries: u64,
    prequeue: u64,
    opens_at: Option<f64>,
    shuffled_after_open: f64,
    admission_rate: f64,
}

async fn waiting_room(db: &tokio_postgres::Client, offering: &str) -> Result<Room, String> {
    let err = |e: tokio_postgres::Error| e.to_string();
    let entries: i64 = db
        .query_one("SELECT count(*) FROM queue_entries WHERE offering_id = $1", &[&offering])
        .await
        .map_err(err)?
        .get(0);
    let row = db
        .query_one(
            "SELECT s.prequeue_size,
                    EXTRACT(EPOCH FROM (o.config->>'opens_at')::timestamptz)::float8,
                    EXTRACT(EPOCH FROM s.shuffled_at - (o.config->>'opens_at')::timestamptz)::float8
             FROM queue_state s JOIN offerings o ON o.id = s.offering_id WHERE s.offering_id = $1",
            &[&offering],
        )
        .await
        .map_err(err)?;
    // The rate actually given, over the counter's steps through the drawn pre-queue: all of
    // it is waiting from the opening on, so there the counter never catches up with the
    // back of the queue and moves at the controller's pace alone.
    let prequeue: i64 = row.get(0);
    let steps = db
        .query_one(
            "SELECT min(serving), max(serving), EXTRACT(EPOCH FROM max(at) - min(at))::float8
             FROM queue_steps WHERE offering_id = $1 AND serving <= $2",
            &[&offering, &prequeue],
        )
        .await
        .map_err(err)?;
    let (first, last, seconds): (Option<i64>, Option<i64>, Option<f64>) =
        (steps.get(0), steps.get(1), steps.get(2));
    let admission_rate = match (first, last, seconds) {
        (Some(a), Some(b), Some(s)) if s > 0.0 => (b - a) as f64 / s,
        _ => f64::NAN,
    };
    Ok(Room {
        entries: entries as u64,
        prequeue: prequeue as u64,
        opens_at: row.get(1),
        shuffled_after_open: row.get::<_, Option<f64>>(2).unwrap_or(f64::NAN),
        admission_rate,
    })
}

/// How often the admission controller held back because the reservation path was slow.
async fn held_back_ticks(shared: &Shared) -> Option<f64> {
    let url = format!("{}/metrics", shared.args.api.trim_end_matches('/'));
    let text = shared.client.get(url).send().await.ok()?.text().await.ok()?;
    // Absent until the first time it holds back: zero then.
    let total = text
        .lines()
        .filter(|l| l.starts_with("allot_queue_held_back_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, n| sum + n);
    Some(total)
}

#[derive(Debug)]
struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

impl Check {
    fn new(name: &'static str, ok: bool, detail: String) -> Check {
        Check { name, ok, detail }
    }
}

#[derive(Debug)]
struct Books {
    ledger_total: u64,
    ledger_max: u64,
    checks: Vec<Check>,
}

/// The seats and per-fan checks, from three places that must agree: TigerBeetle (zones and
/// every fan's holding account), the Postgres projection, and the 201s the fans received.
async fn books(
    shared: &Shared,
    db: &tokio_postgres::Client,
    tally: &Tally,
    supply: u64,
) -> Result<Books, String> {
    let o = &shared.offering;
    let args = &shared.args;
    let max = o.max_per_person;
    let number: i32 = db
        .query_one("SELECT number FROM offerings WHERE id = $1", &[&args.offering])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    let spec = OfferingSpec {
        number: number as u32,
        zones: o
            .zones
            .iter()
            .enumerate()
            .map(|(i, z)| ZoneSpec { number: (i + 1) as u16, supply: z.supply.into() })
            .collect(),
        lot: o.lot.into(),
        min_quantity: o.min_quantity.into(),
        max_per_person: max.into(),
        gateways: allot_api::catalog::GATEWAYS.to_vec(),
    };
    let ledger = Ledger::connect(args.tb_cluster, &args.tb_addresses).map_err(|e| e.to_string())?;
    let zones = ledger.zone_balances(&spec).await.map_err(|e| e.to_string())?;
    let zone_total: u128 = zones.iter().map(|z| z.held + z.confirmed).sum();
    let remaining: u128 = zones.iter().map(|z| z.remaining).sum();

    // Every fan's holding account: what each holds (pending) or owns (posted).
    let fans: Vec<u64> = (0..args.fans).map(|i| Fan::user_id(i) as u64).collect();
    let holdings = ledger.holdings(&spec, &fans).await.map_err(|e| e.to_string())?;
    let (mut fans_total, mut fans_max, mut over) = (0u128, 0u128, 0u64);
    for holding in holdings {
        let seats = holding.held + holding.confirmed;
        fans_total += seats;
        fans_max = fans_max.max(seats);
        over += u64::from(seats > u128::from(max));
    }

    // The projection catches up within its interval; give it time on a loaded machine.
    let until = Instant::now() + Duration::from_secs(60);
    let (pg_total, pg_max, pg_over) = loop {
        let row = db
            .query_one(
                "SELECT COALESCE(sum(q), 0)::BIGINT, COALESCE(max(q), 0)::BIGINT,
                        count(*) FILTER (WHERE q > $2)
                 FROM (SELECT sum(quantity)::BIGINT AS q FROM reservations
                       WHERE offering_id = $1 AND status IN ('held', 'confirmed')
                       GROUP BY user_id) per_fan",
                &[&args.offering, &(max as i64)],
            )
            .await
            .map_err(|e| e.to_string())?;
        let got: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if got.0 as u128 == zone_total || Instant::now() > until {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let mut per_fan: BTreeMap<u64, u64> = BTreeMap::new();
    for (fan, seats) in &tally.held {
        *per_fan.entry(*fan).or_default() += seats;
    }
    let told_total: u64 = per_fan.values().sum();
    let told_max = per_fan.values().copied().max().unwrap_or(0);

    let supply = u128::from(supply);
    let checks = vec![
        Check::new(
            "ledger: exactly the supply held or confirmed",
            zone_total == supply && remaining == 0,
            format!("{zone_total} of {supply} held or confirmed, {remaining} left"),
        ),
        Check::new(
            "ledger: fans hold it all, none above the maximum",
            fans_total == supply && over == 0,
            format!("{fans_total} seats over fans' accounts, max {fans_max}, {over} above {max}"),
        ),
        Check::new(
            "projection: same seats, none above the maximum",
            pg_total as u128 == supply && pg_over == 0,
            format!("{pg_total} seats in Postgres, max {pg_max} per fan, {pg_over} above {max}"),
        ),
        Check::new(
            "fans: 201s add up, none above the maximum",
            u128::from(told_total) == supply && told_max <= max,
            format!("{told_total} seats in 201s, max {told_max} per fan"),
        ),
    ];
    Ok(Books { ledger_total: zone_total as u64, ledger_max: fans_max as u64, checks })
}

#[derive(Clone, Copy, Debug)]
struct Memory {
    rss_mib: f64,
    hwm_mib: f64,
}

/// Resident memory of the API now, and its high-water mark, from the kernel.
fn api_memory(pid: Option<u32>) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
            .map(|kib| kib / 1024.0)
    };
    Some(Memory { rss_mib: field("VmRSS:")?, hwm_mib: field("VmHWM:")? })
}

type Metrics = Vec<(&'static str, f64, &'static str)>;

#[derive(Debug)]
struct Report {
    metrics: Metrics,
    checks: Vec<Check>,
    errors: BTreeMap<String, u64>,
    pow_cost: u32,
}

impl Report {
    fn print(&self, json: bool) {
        if json {
            for (name, value, unit) in &self.metrics {
                // Figures that could not be measured (NaN) print as null.
                println!("{}", allot_tests::json_metric(name, *value, unit));
            }
            for (what, n) in &self.errors {
                eprintln!("error {what}: {n}");
            }
            for c in self.checks.iter().filter(|c| !c.ok) {
                eprintln!("FAILED {}: {}", c.name, c.detail);
            }
            return;
        }
        println!(
            "note: proof of work set cheap for the simulation (cost {}): solving real challenges \
             for every fan on this machine would measure the solver, not the API",
            self.pow_cost
        );
        for (name, value, unit) in &self.metrics {
            println!("{name:<36} {value:>14.2} {unit}");
        }
        for (what, n) in &self.errors {
            println!("error {what:<30} {n:>14}");
        }
        for c in &self.checks {
            println!("{} {}: {}", if c.ok { "ok    " } else { "FAILED" }, c.name, c.detail);
        }
    }
}
