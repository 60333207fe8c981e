//! A logged-in [`Client`] from the configuration, the way both binaries start: resume the
//! saved session if there is one for this server, else log in with the configured e-mail and
//! password (and save the session), else say how to log in. The tree comes from the tree
//! cache the configuration names, if any. Transfers get the configured
//! retry budget. Errors are the engine's; each front-end maps them to its own exit codes.

use crate::api::session::SavedSession;
use crate::api::ApiConfig;
use crate::config::Config;
use crate::transfer::TransferConfig;

use super::{AuthError, Client, Error, Options, Result};

/// The API settings a configuration asks for.
pub fn api_config(cfg: &Config) -> ApiConfig {
    let mut api = ApiConfig::with_base_url(&cfg.api_url);
    api.retry.max_retries = cfg.max_retries;
    api
}

/// Connects as configured (see the module doc). `api` is usually [`api_config`]`(cfg)`.
pub async fn connect(cfg: &Config, api: ApiConfig) -> Result<Client> {
    let transfer = TransferConfig {
        retry: api.retry.clone(),
        https: cfg.https_transfers,
        parallel: cfg.connections,
        limit: match cfg.bwlimit {
            (None, None) => None,
            (up, down) => Some(std::sync::Arc::new(crate::transfer::limit::Bandwidth::new(
                up, down,
            ))),
        },
        ..Default::default()
    };
    let mut c = connect_inner(cfg, api).await?;
    c.set_transfer_config(transfer);
    c.set_graphics(cfg.graphics.map(|(bytes, pixels)| {
        let d = crate::transfer::graphics::Limits::default();
        crate::transfer::graphics::Limits {
            max_bytes: bytes.unwrap_or(d.max_bytes),
            max_pixels: pixels.unwrap_or(d.max_pixels),
        }
    }));
    Ok(c)
}

async fn connect_inner(cfg: &Config, api: ApiConfig) -> Result<Client> {
    let opts = Options {
        tree_cache: cfg.tree_cache.clone(),
        tree_nodes: cfg.tree_nodes,
    };
    let mut expired = false;
    if cfg.session_file.exists() {
        let saved = SavedSession::load(&cfg.session_file)?;
        if saved.api_url == cfg.api_url {
            match Client::resume_with(api.clone(), &saved, opts.clone()).await {
                Ok(c) => return Ok(c),
                Err(Error::Auth(AuthError::SessionExpired)) => expired = true,
                Err(e) => return Err(e),
            }
        }
    }
    match (&cfg.email, &cfg.password) {
        (Some(email), Some(password)) => {
            let c = Client::login_with(api, email, password, None, opts).await?;
            c.save_session(&cfg.session_file)?;
            Ok(c)
        }
        _ if expired => Err(AuthError::SessionExpired.into()),
        _ => Err(AuthError::NotLoggedIn.into()),
    }
}
