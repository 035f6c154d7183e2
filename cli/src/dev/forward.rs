//! `hookgate dev --forward-to URL`: every event to one agent, without a routes file. The
//! routes are one `http` action to URL for every provider and event type, written to the
//! data directory where the banner can name them; the action signs as Standard Webhooks
//! with a secret made for this data directory on first use and kept there
//! (`forward-secret`), so that an agent configured with it keeps working across restarts.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine;

/// The file in the data directory that keeps the signing secret.
pub const SECRET_FILE: &str = "forward-secret";
/// The routes file written for the forwarding, in the data directory.
pub const ROUTES_FILE: &str = "forward-routes.toml";
/// The variable the forwarding action reads its secret from (set by `dev` itself).
pub const SECRET_VARIABLE: &str = "HOOKGATE_FORWARD_SECRET";

/// Where events go, and how they are signed.
#[derive(Debug, Clone)]
pub struct Forwarding {
    pub url: String,
    /// `whsec_…`, as a Standard Webhooks library takes it.
    pub secret: String,
    pub routes_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("--forward-to {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Checks `url`, makes or reads the secret, and writes the routes, in `data_dir`.
pub fn prepare(url: &str, data_dir: &Path) -> Result<Forwarding, ForwardError> {
    let url = agent_url(url)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ForwardError::Io { path, source }
    };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let secret = kept_secret(&data_dir.join(SECRET_FILE))?;
    let routes_file = data_dir.join(ROUTES_FILE);
    std::fs::write(&routes_file, routes(&url)).map_err(io(&routes_file))?;
    Ok(Forwarding {
        url,
        secret,
        routes_file,
    })
}

/// `url` as an absolute http(s) URL, in its serialised form (in which no character needs
/// escaping in a TOML string: quotes and backslashes are percent-encoded or normalised).
fn agent_url(url: &str) -> Result<String, ForwardError> {
    let invalid = |reason: &str| ForwardError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|error| invalid(&error.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("an agent is reached over http:// or https://"));
    }
    Ok(parsed.to_string())
}

fn routes(url: &str) -> String {
    format!(
        "# Written by `hookgate dev --forward-to`; rewritten at each start.\n\n\
         [[route]]\nname = \"every event to --forward-to\"\nprovider = \"*\"\nevents = [\"*\"]\nactions = [\"agent\"]\n\n\
         [action.agent]\ntype = \"http\"\nurl = \"{url}\"\nsecret_env = \"{SECRET_VARIABLE}\"\n"
    )
}

/// The secret in `path`, or a new one (32 random bytes) written there, readable by its
/// owner alone.
fn kept_secret(path: &Path) -> Result<String, ForwardError> {
    let io = |source| ForwardError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(kept) if !kept.trim().is_empty() => return Ok(kept.trim().to_owned()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io(error)),
    }
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut key))
        .map_err(io)?;
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?
    };
    writeln!(file, "{secret}").map_err(io)?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hookgate-forward-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_secret_is_made_once_per_data_directory_and_kept() {
        let dir = scratch("kept");
        let first = prepare("http://127.0.0.1:3000/hooks", &dir).expect("prepared");
        let again = prepare("http://127.0.0.1:3000/other", &dir).expect("prepared again");

        assert!(first.secret.starts_with("whsec_"), "{}", first.secret);
        assert_eq!(first.secret, again.secret);
        let elsewhere = prepare("http://127.0.0.1:3000/hooks", &scratch("other")).unwrap();
        assert_ne!(first.secret, elsewhere.secret);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(scratch("other"));
    }

    #[test]
    fn the_routes_send_every_event_to_the_url_signed_with_the_secret() {
        let dir = scratch("routes");
        let forwarding = prepare("https://agent.example.com/hooks?team=a", &dir).unwrap();

        let text = std::fs::read_to_string(&forwarding.routes_file).unwrap();
        let routes = hookgate::routes::RouteTable::parse(&text, "the forwarding routes")
            .expect("the written routes parse");
        assert_eq!(routes.route_count(), 1);
        assert!(
            text.contains("url = \"https://agent.example.com/hooks?team=a\""),
            "{text}"
        );
        assert!(text.contains(SECRET_VARIABLE), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn anything_but_an_http_url_is_refused_naming_it() {
        for url in ["agent:3000", "ftp://example.com/x", "not a url", ""] {
            let error = prepare(url, &scratch("bad")).expect_err(url).to_string();
            assert!(
                error.starts_with(&format!("--forward-to {url}:")),
                "{error}"
            );
        }
        let _ = std::fs::remove_dir_all(scratch("bad"));
    }
}
