//! `template.yaml` is generated: from `template.in.yaml`, whose per-provider resources are
//! written once, and the provider table (`hookgate::provider`). `scripts/template` writes
//! it; a test fails while the committed file differs from what this makes.
//!
//! The source is YAML with directives on lines of their own:
//!
//! - `#@ each provider` … `#@ end`: the lines between, once per provider, in the table's
//!   order, with `{{name}}` (`github`), `{{Title}}` (`Github`), `{{Display}}` (`GitHub`),
//!   `{{secret}}` (what the provider calls its secret) and `{{secret_hint}}` (what to do
//!   with the stack's generated value) filled in;
//! - `#@ only NAME` … `#@ end`, inside an `each`: lines for that provider alone;
//! - anywhere, `{{names:SEP}}`: every provider's name, joined by SEP.

use hookgate::provider::{Provider, SecretOrigin};

/// The source, relative to the repository.
pub const SOURCE: &str = "template.in.yaml";

/// What is generated, relative to the repository.
pub const OUTPUT: &str = "template.yaml";

/// The first lines of the generated file.
const HEADER: &str = "# Generated from template.in.yaml and the provider table \
(shared/src/provider.rs) by scripts/template:\n# edit those and run it. A test fails while \
this file differs from what they make.\n";

/// The template `source` makes with the provider table, or why it cannot.
pub fn generate(source: &str) -> Result<String, String> {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::from(HEADER);
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        match directive(line) {
            Some(("each", "provider")) => {
                let end = block_end(&lines, index)?;
                for provider in Provider::ALL {
                    expand(&lines[index + 1..end], provider, &mut out)?;
                }
                index = end + 1;
            }
            Some((word, _)) => {
                return Err(format!(
                    "{SOURCE}:{}: `#@ {word}` outside `#@ each provider`",
                    index + 1
                ))
            }
            None => {
                out.push_str(&names(line)?);
                out.push('\n');
                index += 1;
            }
        }
    }
    Ok(out)
}

/// A directive's word and argument: `#@ each provider` is `("each", "provider")`.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.trim_start().strip_prefix("#@")?.trim();
    Some(rest.split_once(' ').unwrap_or((rest, "")))
}

/// The index of the `#@ end` that closes the block opened at `start`.
fn block_end(lines: &[&str], start: usize) -> Result<usize, String> {
    let mut depth = 0;
    for (index, line) in lines.iter().enumerate().skip(start + 1) {
        match directive(line) {
            Some(("end", _)) if depth == 0 => return Ok(index),
            Some(("end", _)) => depth -= 1,
            Some(_) => depth += 1,
            None => {}
        }
    }
    Err(format!("{SOURCE}:{}: a block without `#@ end`", start + 1))
}

/// One provider's copy of an `each` block.
fn expand(lines: &[&str], provider: Provider, out: &mut String) -> Result<(), String> {
    let mut index = 0;
    while index < lines.len() {
        match directive(lines[index]) {
            Some(("only", name)) => {
                let end = block_end(lines, index)?;
                if name == provider.as_str() {
                    expand(&lines[index + 1..end], provider, out)?;
                }
                index = end + 1;
            }
            Some((word, _)) => {
                return Err(format!("`#@ {word}` inside `#@ each provider`"));
            }
            None => {
                out.push_str(&fill(&names(lines[index])?, provider));
                out.push('\n');
                index += 1;
            }
        }
    }
    Ok(())
}

/// `line` with the provider's placeholders filled.
fn fill(line: &str, provider: Provider) -> String {
    let hint = match provider.secret_origin() {
        SecretOrigin::Generated => "Copy this generated value into the sender's webhook \
             settings, or put the sender's own here with aws secretsmanager put-secret-value."
            .to_owned(),
        SecretOrigin::Issued => format!(
            "Replace the generated placeholder with the one {} issues, with aws \
             secretsmanager put-secret-value.",
            provider.display_name()
        ),
    };
    line.replace("{{name}}", provider.as_str())
        .replace("{{Title}}", provider.title())
        .replace("{{Display}}", provider.display_name())
        .replace("{{secret}}", provider.secret_name())
        .replace("{{secret_hint}}", &hint)
}

/// `line` with every `{{names:SEP}}` replaced by the providers' names joined by SEP.
fn names(line: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find("{{names:") {
        let after = &rest[start + "{{names:".len()..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("an unclosed {{{{names:…}}}} in `{line}`"))?;
        let joined = Provider::ALL
            .map(|provider| provider.as_str())
            .join(&after[..end]);
        out.push_str(&rest[..start]);
        out.push_str(&joined);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_is_repeated_per_provider_with_its_names_and_its_own_lines() {
        let source = "top: {{names:|}}\n#@ each provider\n  {{Title}}Thing: {{name}}\n#@ only generic\n  Extra: yes\n#@ end\n#@ end\nbottom";

        let generated = generate(source).expect("a valid source");

        let body = generated.strip_prefix(HEADER).expect("the header first");
        assert!(body.starts_with("top: github|stripe|"), "{body}");
        assert!(body.contains("  GithubThing: github\n  StripeThing: stripe\n"));
        assert!(body.contains("  GenericThing: generic\n  Extra: yes\nbottom"));
        assert_eq!(body.matches("Extra").count(), 1);
    }

    #[test]
    fn a_block_left_open_or_a_directive_out_of_place_is_refused() {
        assert!(generate("#@ each provider\n  x\n").is_err());
        assert!(generate("#@ only github\n#@ end\n").is_err());
        assert!(generate("x: {{names:,\n").is_err());
    }
}
