//! The two callers of `./ops/contract`, made the way people make them, over HTTP against a
//! running API in dev mode: a citizen who registers (solving the proof of work) and signs
//! in, and the dev admin, who signs in with password and authenticator code (so its token
//! carries the second factor). The citizen also holds 5,000 baht of `bond-2026` with a payment
//! opened for it, so the operations on a reservation or a payment have a real one to work
//! on. Prints `CITIZEN_TOKEN=`, `ADMIN_TOKEN=`, `CONTRACT_RESERVATION_ID=` and
//! `CONTRACT_PAYMENT_ID=` lines for the shell to read.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use allot_api::identity::totp;
use allot_tests::people::national_id;
use clap::Parser;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(about = "A citizen's and the dev admin's access tokens, for the contract run")]
struct Args {
    /// The API's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// The API's data directory, where the dev admin's credentials are.
    #[arg(long)]
    data_dir: PathBuf,
}

const PASSWORD: &str = "contract-plum-orbit-kettle-92";

async fn expect(res: reqwest::Response, status: u16, what: &str) -> Value {
    let got = res.status().as_u16();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if got != status {
        eprintln!("{what}: {got} {body}");
        std::process::exit(1);
    }
    body
}

async fn access_token(client: &reqwest::Client, url: &str, body: Value, who: &str) -> String {
    let res = client.post(format!("{url}/v1/sessions")).json(&body).send().await;
    let session = expect(res.expect("the API answers"), 200, who).await;
    session["access_token"].as_str().expect("a token").to_owned()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let client = reqwest::Client::new();
    let url = args.url.trim_end_matches('/');

    let challenge = client.get(format!("{url}/v1/challenge")).send().await.expect("answers");
    let challenge = expect(challenge, 200, "challenge").await;
    let pow = allot_api::fairness::pow::solve(&serde_json::from_value(challenge).expect("ALTCHA"));
    let email = format!("contract-{}@example.com", uuid::Uuid::new_v4().simple());
    let registration = json!({"national_id": national_id(), "email": email, "password": PASSWORD});
    let res = client.post(format!("{url}/v1/users")).header("X-Pow", pow).json(&registration);
    let registered = expect(res.send().await.expect("answers"), 201, "registration").await;
    let user_id = registered["user_id"].as_i64().expect("a user id");
    let citizen = json!({"login": email, "password": PASSWORD});
    let citizen = access_token(&client, url, citizen, "citizen sign-in").await;
    // The bond is for verified citizens: the sandbox KYC provider approves this one, as
    // `ops/kyc` does.
    let res = client.post(format!("{url}/v1/me/kyc")).bearer_auth(&citizen).send().await;
    let opened = res.expect("answers");
    if !opened.status().is_success() {
        expect(opened, 201, "identity check").await;
    }
    let res = client
        .post(format!("{url}/v1/sandbox/kyc/{user_id}"))
        .bearer_auth(&citizen)
        .json(&json!({"decision": "approved"}))
        .send()
        .await
        .expect("answers");
    if !res.status().is_success() {
        expect(res, 200, "identity approval").await;
    }
    let res = client
        .post(format!("{url}/v1/offerings/bond-2026/reservations"))
        .bearer_auth(&citizen)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"quantity": 5_000}));
    let reservation = expect(res.send().await.expect("answers"), 201, "reservation").await;
    let reservation = reservation["reservation_id"].as_str().expect("an id").to_owned();
    let res = client
        .post(format!("{url}/v1/reservations/{reservation}/payments"))
        .bearer_auth(&citizen)
        .json(&json!({"method": "promptpay"}));
    let payment = expect(res.send().await.expect("answers"), 201, "payment").await;
    let payment = payment["payment_id"].as_str().expect("an id").to_owned();

    let path = args.data_dir.join(allot_api::identity::dev_bootstrap::CREDENTIALS_FILE);
    let creds: Value = serde_json::from_slice(&std::fs::read(&path).expect("dev credentials"))
        .expect("dev credentials are JSON");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    let code = totp::code_at(creds["totp_secret"].as_str().expect("a secret"), now);
    let admin = json!({"login": creds["email"], "password": creds["password"], "totp": code});
    let admin = access_token(&client, url, admin, "admin sign-in").await;

    println!("CITIZEN_TOKEN={citizen}");
    println!("ADMIN_TOKEN={admin}");
    println!("CONTRACT_RESERVATION_ID={reservation}");
    println!("CONTRACT_PAYMENT_ID={payment}");
}
