//! Prompt templates at build time: loaded once, checked against the hashes the lock pinned, and
//! rendered block by block into chat messages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use sdc_compiler::plan::Plan;
use sdc_compiler::templates;
use serde_json::Value;

/// Rendering is bounded: a template that loops forever fails instead of hanging a build.
const FUEL: u64 = 5_000_000;

pub struct Prompts {
    env: minijinja::Environment<'static>,
    /// Template name → sha256 pinned in the lock.
    pub hashes: BTreeMap<String, String>,
    blocks: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{0}")]
    Load(String),
    #[error(
        "prompt template `{name}` changed since the lock (sha256 {locked} → {actual}); run `sdc lock` (or `sdc build` without `--frozen`)"
    )]
    Drift { name: String, locked: String, actual: String },
    #[error("rendering block `{block}` of `{template}` failed: {message}")]
    Render { template: String, block: String, message: String },
}

impl Prompts {
    pub fn load(dir: &Path, plan: &Plan) -> Result<Prompts, PromptError> {
        let mut hashes = BTreeMap::new();
        let mut blocks = BTreeMap::new();
        for stage in &plan.stages {
            for p in &stage.prompts {
                let loaded = templates::load(dir, &p.template).map_err(PromptError::Load)?;
                let actual = loaded.digest();
                if !p.sha256.is_empty() && actual != p.sha256 {
                    return Err(PromptError::Drift { name: p.template.clone(), locked: p.sha256.clone(), actual });
                }
                let mut names = templates::block_names(&loaded.source);
                for (_, text) in &loaded.includes {
                    names.extend(templates::block_names(text));
                }
                blocks.insert(p.template.clone(), names);
                hashes.insert(p.template.clone(), actual);
            }
        }
        let mut env = templates::environment(dir);
        env.set_fuel(Some(FUEL));
        Ok(Prompts { env, hashes, blocks })
    }

    /// Whether the template defines the block.
    pub fn has_block(&self, template: &str, block: &str) -> bool {
        self.blocks.get(template).is_some_and(|b| b.contains(block))
    }

    /// Renders blocks of one template with the stage's variables, in order; surrounding
    /// whitespace is trimmed. The template is evaluated once for them all (a step's `system`
    /// and user blocks): evaluating it is most of what rendering costs.
    pub fn render_blocks(&self, template: &str, blocks: &[&str], vars: &Value) -> Result<Vec<String>, PromptError> {
        let err = |block: &str, message: String| PromptError::Render {
            template: template.to_string(),
            block: block.to_string(),
            message,
        };
        let first = blocks.first().copied().unwrap_or_default();
        let t = self.env.get_template(template).map_err(|e| err(first, e.to_string()))?;
        let ctx = minijinja::Value::from(minijinja::value::Serde(vars));
        // The whole template's own output is not needed, only the state it leaves for blocks.
        let mut captured = t.render_captured_to(ctx, std::io::sink()).map_err(|e| err(first, e.to_string()))?;
        captured.with_state_mut(|state| {
            blocks
                .iter()
                .map(|block| state.render_block(block).map(trim).map_err(|e| err(block, e.to_string())))
                .collect()
        })
    }
}

/// `text.trim().to_string()` without a second allocation and copy.
fn trim(mut text: String) -> String {
    text.truncate(text.trim_end().len());
    let start = text.len() - text.trim_start().len();
    text.drain(..start);
    text
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn trimming_in_place_is_str_trim(text in "[ \t\n\u{a0}\u{3000}a-z]{0,24}") {
            prop_assert_eq!(super::trim(text.clone()), text.trim());
        }
    }
}
