//! How long a refused sign-in takes for a known login with a wrong password and for a login
//! nobody has, over HTTP into an in-process API: the two should cost the same (an unknown
//! login is verified against a dummy hash of the same cost), so that the answer's timing
//! does not tell whether an account exists. Prints both medians and their ratio; the
//! deterministic half of the claim (every refusal runs one full argon2id verification) is
//! a unit test of `api/src/identity/password.rs`.
//!
//! Needs Postgres at `ALLOT_TEST_DATABASE_URL` (a fresh database is created in it) and the
//! TigerBeetle binary (`ALLOT_TB_BIN` or the ops cache), as the tests do.

use std::time::{Duration, Instant};

use allot_tests::app::TestApp;
use allot_tests::people::national_id;
use clap::Parser;
use rand::Rng;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Timing of refused sign-ins: wrong password against unknown login")]
struct Args {
    /// Sign-ins of each kind, alternating.
    #[arg(long, default_value_t = 40)]
    rounds: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

const PASSWORD: &str = "plum-orbit-kettle-92";

fn main() {
    let args = Args::parse();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let (wrong, unknown) = runtime.block_on(run(args.rounds));
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    let figures = [
        ("sign_in_wrong_password_ms", wrong.as_secs_f64() * 1e3, "ms"),
        ("sign_in_unknown_login_ms", unknown.as_secs_f64() * 1e3, "ms"),
        ("sign_in_unknown_to_known", ratio, "ratio"),
    ];
    for (name, value, unit) in figures {
        if args.json {
            println!("{}", allot_tests::json_metric(name, value, unit));
        } else {
            println!("{name:<26} {value:>12.2}  {unit}");
        }
    }
    // The in-process API's workers would keep calling a ledger that is going away.
    std::process::exit(0)
}

/// Medians of (wrong password, unknown login), `rounds` of each, interleaved so that
/// whatever else the machine does falls on both alike.
async fn run(rounds: usize) -> (Duration, Duration) {
    let app = TestApp::spawn().await;
    let email = format!("bench{}@example.com", rand::thread_rng().gen_range(0..u32::MAX));
    let res = app
        .client
        .post(app.url("/v1/users"))
        .header("X-Pow", app.pow().await)
        .json(&json!({"national_id": national_id(), "email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let sign_in = |login: String, password: &'static str, expected: u16| {
        let app = &app;
        async move {
            let start = Instant::now();
            let res = app
                .client
                .post(app.url("/v1/sessions"))
                .json(&json!({"login": login, "password": password}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), expected);
            start.elapsed()
        }
    };
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        wrong.push(sign_in(email.clone(), "wrong-orbit-kettle-93", 401).await);
        unknown.push(sign_in(format!("nobody{i}@example.com"), PASSWORD, 401).await);
        // A good sign-in now and then (not counted) ends the run of failures before the
        // account backs off, which would answer without hashing.
        if i % 4 == 3 {
            sign_in(email.clone(), PASSWORD, 200).await;
        }
    }
    (median(wrong), median(unknown))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
