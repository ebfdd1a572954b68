//! Keyword classification over the spec's category descriptions.
//!
//! Each category's words (those of its name and description, four letters or more, lowercased,
//! a trailing plural `s` removed) are counted in the item's question and answer, and in the
//! heading of its chunk (counted double: it names the topic). The highest score wins. Ties — and
//! the all-zero case — are broken by a hash of the item id over the tied categories, never by
//! spec order, so no category collects the undecided items (the original's fallback to the
//! first category is what made `circuits_and_gates` 34 % of its dataset).

use sha2::{Digest, Sha256};

use crate::build::inputs::ClassifyInput;

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 4)
        .map(|w| {
            let w = w.to_lowercase();
            match w.strip_suffix('s') {
                Some(stem) if stem.chars().count() >= 4 && !stem.ends_with('s') => stem.to_string(),
                _ => w,
            }
        })
        .collect()
}

pub fn classify(input: &ClassifyInput) -> String {
    let body = words(&format!("{}\n{}", input.question, input.answer));
    let heading = words(input.heading.as_deref().unwrap_or(""));
    let mut scored: Vec<(u64, &str)> = input
        .categories
        .iter()
        .map(|c| {
            let mut vocabulary = words(&format!("{} {}", c.name.replace('_', " "), c.description));
            vocabulary.sort();
            vocabulary.dedup();
            let count = |ws: &[String]| ws.iter().filter(|w| vocabulary.binary_search(w).is_ok()).count() as u64;
            (count(&body) + 2 * count(&heading), c.name.as_str())
        })
        .collect();
    let best = scored.iter().map(|(s, _)| *s).max().unwrap_or(0);
    scored.retain(|(s, _)| *s == best);
    scored.sort_by(|a, b| a.1.cmp(b.1));
    if scored.is_empty() {
        return String::new();
    }
    let digest = Sha256::digest(input.task_id.as_bytes());
    let pick =
        u64::from_le_bytes([digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7]]);
    scored[(pick % scored.len() as u64) as usize].1.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::inputs::CategoryInfo;

    fn input(question: &str, answer: &str, task_id: &str) -> ClassifyInput {
        let cat = |n: &str, d: &str| CategoryInfo { name: n.into(), description: d.into() };
        ClassifyInput {
            task_id: task_id.into(),
            categories: vec![
                cat("circuits_and_gates", "Quantum circuit construction, standard and parameterised gates"),
                cat("noise_and_error_mitigation", "Noise models, readout error, zero-noise extrapolation"),
            ],
            question_type: "qa".into(),
            question: question.into(),
            answer: answer.into(),
            heading: None,
        }
    }

    #[test]
    fn the_best_scoring_category_wins_and_ties_are_spread() {
        assert_eq!(
            classify(&input("How does readout noise bias counts?", "Readout errors flip bits.", "a")),
            "noise_and_error_mitigation"
        );
        assert_eq!(classify(&input("Build a circuit with two gates.", "qc.h(0)", "a")), "circuits_and_gates");
        let picks: std::collections::BTreeSet<String> =
            (0..32).map(|i| classify(&input("Why?", "Because.", &format!("item{i}")))).collect();
        assert_eq!(picks.len(), 2, "undecided items go to both categories, not to the first one");
    }
}
