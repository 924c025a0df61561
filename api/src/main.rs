//! Thin entry point: everything lives in the library so tests can build the same app.

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    match allot_api::startup::run_from_env().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("allot-api: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
