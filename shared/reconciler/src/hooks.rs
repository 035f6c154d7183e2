//! The GitHub webhooks the reconciler watches, as `GITHUB_HOOKS` names them:
//! `repo:OWNER/NAME:HOOK_ID` for a repository's hook, `org:ORG:HOOK_ID` for an
//! organisation's, separated by commas.

use std::fmt;
use std::str::FromStr;

/// Whose hook it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookOwner {
    Repository { owner: String, name: String },
    Organization { org: String },
}

/// One GitHub webhook.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hook {
    pub owner: HookOwner,
    /// The hook's id (GitHub's `X-GitHub-Hook-ID`).
    pub id: u64,
}

impl Hook {
    /// The hook's path under the REST API's base: `/repos/OWNER/NAME/hooks/ID` or
    /// `/orgs/ORG/hooks/ID`.
    pub fn api_path(&self) -> String {
        match &self.owner {
            HookOwner::Repository { owner, name } => {
                format!("/repos/{owner}/{name}/hooks/{}", self.id)
            }
            HookOwner::Organization { org } => format!("/orgs/{org}/hooks/{}", self.id),
        }
    }
}

/// As `GITHUB_HOOKS` writes it; also its name in logs, metrics and the state table.
impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.owner {
            HookOwner::Repository { owner, name } => write!(f, "repo:{owner}/{name}:{}", self.id),
            HookOwner::Organization { org } => write!(f, "org:{org}:{}", self.id),
        }
    }
}

/// A hook that is not `repo:OWNER/NAME:ID` or `org:ORG:ID`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a hook ({reason}); write repo:OWNER/NAME:HOOK_ID or org:ORG:HOOK_ID")]
pub struct InvalidHook {
    pub text: String,
    pub reason: &'static str,
}

/// A name GitHub allows for an owner, repository or organisation: letters, digits, `-`,
/// `_` and `.`, which is also what keeps it a single path segment.
fn is_github_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl FromStr for Hook {
    type Err = InvalidHook;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let invalid = |reason| InvalidHook {
            text: text.to_owned(),
            reason,
        };
        let (kind, rest) = text.split_once(':').ok_or_else(|| invalid("no kind"))?;
        let (path, id) = rest.rsplit_once(':').ok_or_else(|| invalid("no hook id"))?;
        let id: u64 = id
            .parse()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| invalid("the hook id is not a positive number"))?;
        let owner = match kind {
            "repo" => {
                let (owner, name) = path
                    .split_once('/')
                    .ok_or_else(|| invalid("a repository is OWNER/NAME"))?;
                if !is_github_name(owner) || !is_github_name(name) {
                    return Err(invalid("a name has characters GitHub does not allow"));
                }
                HookOwner::Repository {
                    owner: owner.to_owned(),
                    name: name.to_owned(),
                }
            }
            "org" => {
                if !is_github_name(path) {
                    return Err(invalid(
                        "the organisation's name has characters GitHub does not allow",
                    ));
                }
                HookOwner::Organization {
                    org: path.to_owned(),
                }
            }
            _ => return Err(invalid("the kind is neither repo nor org")),
        };
        Ok(Self { owner, id })
    }
}

/// The hooks of a `GITHUB_HOOKS` list, each once.
pub fn parse_hooks(list: &str) -> Result<Vec<Hook>, InvalidHook> {
    let mut hooks: Vec<Hook> = list
        .split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    hooks.sort();
    hooks.dedup();
    Ok(hooks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_and_organisation_hooks_parse_and_print_back() {
        let hooks = parse_hooks(" repo:octo-org/hello.world:12345 , org:octo-org:678,").unwrap();
        let repository = Hook {
            owner: HookOwner::Repository {
                owner: "octo-org".into(),
                name: "hello.world".into(),
            },
            id: 12345,
        };
        let organisation = Hook {
            owner: HookOwner::Organization {
                org: "octo-org".into(),
            },
            id: 678,
        };
        assert_eq!(hooks, [repository.clone(), organisation.clone()]);
        assert_eq!(repository.to_string(), "repo:octo-org/hello.world:12345");
        assert_eq!(
            repository.api_path(),
            "/repos/octo-org/hello.world/hooks/12345"
        );
        assert_eq!(organisation.to_string(), "org:octo-org:678");
        assert_eq!(organisation.api_path(), "/orgs/octo-org/hooks/678");
    }

    #[test]
    fn a_hook_listed_twice_is_watched_once() {
        assert_eq!(parse_hooks("org:a:1,org:a:1").unwrap().len(), 1);
    }

    #[test]
    fn malformed_hooks_are_refused_saying_why() {
        for (text, reason) in [
            ("repo:octo/hello", "no hook id"),
            ("repo:octo:1", "a repository is OWNER/NAME"),
            ("org:octo:0", "the hook id is not a positive number"),
            ("team:octo:1", "the kind is neither repo nor org"),
            (
                "repo:octo/../x:1",
                "a name has characters GitHub does not allow",
            ),
            (
                "repo:octo/a?b:1",
                "a name has characters GitHub does not allow",
            ),
            (
                "org:../admin:1",
                "the organisation's name has characters GitHub does not allow",
            ),
            ("12345", "no kind"),
        ] {
            let error = text.parse::<Hook>().unwrap_err();
            assert_eq!(error.reason, reason, "{text}");
            assert!(
                error.to_string().contains("repo:OWNER/NAME:HOOK_ID"),
                "{error}"
            );
        }
    }
}
