//! Environment variables as the spec sees them: the process environment, then a `.env` file.
//!
//! Values read here may be secrets; nothing in this module logs or prints them.

use std::collections::BTreeMap;
use std::path::Path;

use sdc_compiler::diagnostic::{Code, Diagnostic};
use sdc_compiler::spec::Setting;

#[derive(Clone, Debug, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// The process environment, with a `.env` file in `dir` filling in what it does not set.
    pub fn load(dir: &Path) -> Environment {
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(dir.join(".env")) {
            vars.extend(parse_dotenv(&text));
        }
        for (k, v) in std::env::vars() {
            vars.insert(k, v);
        }
        Environment { vars }
    }

    /// An environment holding exactly these variables (for tests).
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Environment {
        Environment { vars: vars.into_iter().collect() }
    }

    /// A non-empty variable's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Resolves a setting: a literal, the variable, or its default.
    /// `Ok(None)` means the variable is unset and has no default.
    pub fn setting(&self, setting: &Setting) -> Option<String> {
        match setting {
            Setting::Literal(s) => Some(s.clone()),
            Setting::Env { name, default, .. } => self.get(name).map(str::to_string).or_else(|| default.clone()),
        }
    }

    /// Like [`Environment::setting`], but an unset variable without default is an error that
    /// names the variable and points at the spec — never an empty string.
    pub fn require(&self, setting: &Setting, what: &str) -> Result<String, Diagnostic> {
        self.setting(setting).ok_or_else(|| match setting {
            Setting::Env { name, span, .. } => {
                Diagnostic::error(Code::EnvUnset, *span, format!("environment variable `{name}` is not set"))
                    .with_label(format!("{what} comes from `{name}`"))
                    .with_hint(format!(
                        "set `{name}` in the environment or in `.env`, or give a default: `env(\"{name}\", \"…\")`"
                    ))
            }
            Setting::Literal(_) => Diagnostic::error(Code::EnvUnset, Default::default(), "unreachable"),
        })
    }
}

/// `KEY=VALUE` lines; `#` comments, `export ` prefixes and matching quotes are accepted.
fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        out.push((k.trim().to_string(), v.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines() {
        let vars = parse_dotenv("# c\nA=1\nexport B = \"two words\"\nC='x'\nnot a line\n");
        assert_eq!(vars, vec![("A".into(), "1".into()), ("B".into(), "two words".into()), ("C".into(), "x".into())]);
    }
}
