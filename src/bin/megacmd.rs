//! `megacmd`: an s3cmd-style command line for MEGA. A thin main over `mega_mount::cli`.

use std::process::ExitCode;

use clap::Parser;
use mega_mount::cli::{self, exit, Cli};
use mega_mount::config::Env;

fn main() -> ExitCode {
    let args = Cli::parse();
    let filter = match args.verbose {
        0 | 1 => "warn",
        2 => "mega_mount=debug,warn",
        _ => "mega_mount=trace,info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MEGACMD_LOG")
                .unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("megacmd: cannot start: {e}");
            return ExitCode::from(exit::OTHER as u8);
        }
    };
    let env = Env::from_process();
    let result = rt.block_on(async {
        tokio::select! {
            r = cli::run(args, &env) => r,
            // Dropping the command removes partial downloads (their temp files).
            _ = tokio::signal::ctrl_c() => Err(cli::CliError::new(exit::INTERRUPTED, "interrupted")),
        }
    });
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("megacmd: {e}");
            ExitCode::from(e.code.clamp(1, 255) as u8)
        }
    }
}
