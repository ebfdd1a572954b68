//! Dedup: exact and near-duplicate generated items, decided from text and image identity alone.
//!
//! Two passes over one union-find:
//!
//! 1. **Exact**: sha256 of (question, answer, image id or none), each text in a light normal form
//!    ([`exact_normal_form`]: NFKC, runs of whitespace collapsed, blank lines dropped). Case is
//!    kept, because code is case-sensitive; case-only variants are left to the near pass.
//! 2. **Near**: MinHash with LSH banding over shingles of question and answer (following HF
//!    datatrove's `MinhashConfig`, seed-pipeline.md §2.6 is the dead original): prose is
//!    lowercased, stripped of diacritics and punctuation, digits set to 0, and cut into word
//!    5-grams; code (fenced blocks, and the whole answer of a code task without fences) keeps its
//!    case and punctuation and is cut into 5-grams of identifier, number and operator tokens.
//!    Question and answer shingles are kept apart (a question's words never match an answer's).
//!    Permutations are universal hashes `(a·x + b) mod (2³¹ − 1)` (see [`Permutations`] for why
//!    not 2⁶¹ − 1) with `a, b` derived from the build seed; shingles are hashed with xxh3. Pairs
//!    sharing a band bucket are verified by the exact Jaccard similarity of their shingle sets
//!    (≥ threshold), so LSH decides only which pairs are looked at, never what is a duplicate.
//!
//! **Images partition everything.** An item's image id (or "none") is part of its exact key and of
//! every LSH bucket key, and is checked again before a pair is verified: two items about different
//! pictures, or one about a picture and one without, are never duplicates, however alike their
//! text.
//!
//! Clusters are the connected components of exact and verified near pairs. The kept item of a
//! cluster is its smallest id; every other member is removed and records that kept item (never an
//! intermediate one), so a removed item's `similarity` to it can be below the threshold when the
//! cluster is a chain (A ≈ B ≈ C with A and C further apart).
//!
//! It deliberately does not compare images by their pixels (ids are content hashes, so the same
//! picture has one id), does not use embeddings, and does not choose the better of two duplicates:
//! which to keep is a function of ids only.

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DedupItem {
    pub id: String,
    /// `function_completion`, `code_generation` or `qa`: decides whether an answer without code
    /// fences is read as code.
    pub task_type: String,
    pub question: String,
    pub answer: String,
    pub image_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DupKind {
    /// Same exact key as the kept item.
    Exact,
    /// In the kept item's cluster through verified near pairs.
    Near,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Duplicate {
    pub id: String,
    /// The kept item of its cluster.
    pub duplicate_of: String,
    pub kind: DupKind,
    /// Jaccard similarity of the shingle sets to the kept item (1 for exact duplicates).
    pub similarity: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DedupResult {
    /// Sorted.
    pub kept: Vec<String>,
    /// Sorted by id.
    pub removed: Vec<Duplicate>,
}

/// Word (or token) n-gram length.
pub const SHINGLE: usize = 5;

/// The LSH layout: `bands × rows` MinHash values, a pair is a candidate when all rows of one band
/// agree. The probability that a pair with Jaccard `s` becomes a candidate is
/// `1 − (1 − s^rows)^bands`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LshParams {
    pub bands: usize,
    pub rows: usize,
}

impl LshParams {
    /// The smallest signature (`bands × rows`, at most 256) that makes a pair at the threshold a
    /// candidate with probability ≥ 0.99 and a pair at half the threshold with probability ≤ 0.1.
    /// Recall at the threshold is what matters (candidates are verified exactly); the second
    /// condition keeps the verification work small, and the signature's size is the pass's main
    /// cost. Equal sizes prefer more rows (fewer spurious candidates). For the flagship threshold
    /// 0.85 this is 10 bands × 6 rows (60 permutations): P(candidate) is 0.991 at 0.85, 0.9995 at
    /// 0.9, 0.71 at 0.7, 0.15 at 0.5, 0.06 at 0.425 and 0.007 at 0.3. When no layout meets both
    /// conditions (thresholds below about 0.69) the one maximising their difference is used.
    pub fn for_threshold(threshold: f64) -> LshParams {
        let mut best: Option<(usize, LshParams)> = None;
        let mut fallback = (f64::NEG_INFINITY, LshParams { bands: 14, rows: 8 });
        for rows in 1..=32 {
            for bands in 1..=256 / rows {
                let p = LshParams { bands, rows };
                let (hit, spurious) = (p.candidate_probability(threshold), p.candidate_probability(threshold / 2.0));
                let size = bands * rows;
                if hit >= 0.99 && spurious <= 0.1 {
                    if best.is_none_or(|(s, b)| size < s || (size == s && rows > b.rows)) {
                        best = Some((size, p));
                    }
                } else if hit - spurious > fallback.0 {
                    fallback = (hit - spurious, p);
                }
            }
        }
        best.map_or(fallback.1, |(_, p)| p)
    }

    /// `1 − (1 − s^rows)^bands`, by repeated multiplication (no `powi`, whose rounding is not
    /// specified), so the choice of layout is the same on every platform.
    pub fn candidate_probability(&self, similarity: f64) -> f64 {
        let mut band = 1.0;
        for _ in 0..self.rows {
            band *= similarity;
        }
        let mut miss = 1.0;
        for _ in 0..self.bands {
            miss *= 1.0 - band;
        }
        1.0 - miss
    }

    pub fn permutations(&self) -> usize {
        self.bands * self.rows
    }
}

/// Removes exact and near duplicates; items with a Jaccard similarity ≥ `threshold` are near
/// duplicates. The near pass runs only for `0 < threshold ≤ 1`. `seed` chooses the MinHash
/// permutations, so it can only change which near pairs are found (recall ≥ 0.99 at the
/// threshold), never make a pair below the threshold a duplicate.
///
/// Ids are content ids: an id given twice is one item (the smallest entry by its fields is used,
/// which keeps the result independent of input order).
pub fn dedup(items: &[DedupItem], threshold: f64, seed: u64) -> DedupResult {
    let mut items: Vec<&DedupItem> = items.iter().collect();
    items.sort_by(|a, b| {
        (&a.id, &a.image_id, &a.task_type, &a.question, &a.answer).cmp(&(
            &b.id,
            &b.image_id,
            &b.task_type,
            &b.question,
            &b.answer,
        ))
    });
    items.dedup_by(|b, a| a.id == b.id);
    let keys: Vec<DedupKey> = items
        .iter()
        .map(|i| DedupKey { id: i.id.clone(), task_type: i.task_type.clone(), image_id: i.image_id.clone() })
        .collect();
    let texts = |i: usize| Ok::<_, std::convert::Infallible>((items[i].question.clone(), items[i].answer.clone()));
    match dedup_lazy(&keys, texts, threshold, seed) {
        Ok(r) => r,
        Err(e) => match e {},
    }
}

/// An item as [`dedup_lazy`] holds it: everything but its texts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DedupKey {
    pub id: String,
    pub task_type: String,
    pub image_id: Option<String>,
}

/// [`dedup`] over items whose texts are fetched when needed (`texts(i)` gives item `i`'s question
/// and answer) rather than held: at 100k items the texts and their normal forms would be most of
/// a build's memory. `keys` must be sorted by id with no id twice. A text is fetched once for
/// every item, and again for the few that share an LSH bucket or are removed.
pub fn dedup_lazy<E: Send>(
    keys: &[DedupKey],
    texts: impl Fn(usize) -> Result<(String, String), E> + Sync,
    threshold: f64,
    seed: u64,
) -> Result<DedupResult, E> {
    let n = keys.len();
    let normal = |i: usize| texts(i).map(|(q, a)| Normal::new(&q, &a, keys[i].image_id.as_deref()));

    // Exact pass. Indices are in id order, so a component's smallest index is its smallest id.
    let exact: Vec<[u8; 32]> =
        (0..n).into_par_iter().map(|i| normal(i).map(|m| m.exact_key)).collect::<Result<_, E>>()?;
    let mut uf = UnionFind::new(n);
    let mut by_key: Vec<usize> = (0..n).collect();
    by_key.sort_by(|&a, &b| exact[a].cmp(&exact[b]).then(a.cmp(&b)));
    let mut representatives = Vec::new();
    for run in by_key.chunk_by(|&a, &b| exact[a] == exact[b]) {
        representatives.push(run[0]);
        for &other in &run[1..] {
            uf.union(run[0], other);
        }
    }
    representatives.sort_unstable();

    // Near pass over one representative per exact key.
    let shingles = |i: usize| normal(i).map(|m| m.shingles(&keys[i].task_type));
    if threshold > 0.0 && threshold <= 1.0 {
        near_pass(keys, &shingles, &representatives, threshold, seed, &mut uf)?;
    }

    let mut kept = Vec::new();
    let mut removed = Vec::new();
    for i in 0..n {
        let root = uf.find(i);
        if root == i {
            kept.push(keys[i].id.clone());
            continue;
        }
        let is_exact = exact[i] == exact[root];
        let similarity = if is_exact { 1.0 } else { jaccard(&shingles(i)?, &shingles(root)?) };
        removed.push(Duplicate {
            id: keys[i].id.clone(),
            duplicate_of: keys[root].id.clone(),
            kind: if is_exact { DupKind::Exact } else { DupKind::Near },
            similarity,
        });
    }
    Ok(DedupResult { kept, removed })
}

fn near_pass<E: Send>(
    keys: &[DedupKey],
    shingles: &(impl Fn(usize) -> Result<Vec<u64>, E> + Sync),
    representatives: &[usize],
    threshold: f64,
    seed: u64,
    uf: &mut UnionFind,
) -> Result<(), E> {
    let params = LshParams::for_threshold(threshold);
    let permutations = Permutations::new(seed, params.permutations());
    // Signatures, then one bucket key per band; shingle sets are dropped to keep memory flat and
    // recomputed below for the few items that share a bucket.
    let keyed: Vec<(usize, Vec<u64>)> = representatives
        .par_iter()
        .map(|&i| {
            let shingles = shingles(i)?;
            if shingles.is_empty() {
                return Ok(None);
            }
            let signature = permutations.signature(&shingles);
            let image = image_tag(keys[i].image_id.as_deref());
            let bands = (0..params.bands)
                .map(|band| {
                    let mut bytes = Vec::with_capacity(8 + 4 * params.rows);
                    bytes.extend_from_slice(&image.to_le_bytes());
                    for v in &signature[band * params.rows..(band + 1) * params.rows] {
                        bytes.extend_from_slice(&v.to_le_bytes());
                    }
                    xxh3_64_with_seed(&bytes, band as u64)
                })
                .collect();
            Ok(Some((i, bands)))
        })
        .collect::<Result<Vec<_>, E>>()?
        .into_iter()
        .flatten()
        .collect();
    let mut buckets: Vec<(usize, u64, usize)> = Vec::with_capacity(keyed.len() * params.bands);
    for (i, bands) in &keyed {
        for (band, &key) in bands.iter().enumerate() {
            buckets.push((band, key, *i));
        }
    }
    drop(keyed);
    buckets.par_sort_unstable();
    let runs: Vec<&[(usize, u64, usize)]> =
        buckets.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)).filter(|run| run.len() > 1).collect();

    let mut involved: Vec<usize> = runs.iter().flat_map(|run| run.iter().map(|e| e.2)).collect();
    involved.sort_unstable();
    involved.dedup();
    let sets: Vec<Vec<u64>> = involved.par_iter().map(|&i| shingles(i)).collect::<Result<_, E>>()?;
    let set_of = |i: usize| involved.binary_search(&i).ok().map(|k| &sets[k]);

    // Every pair in every bucket, in (band, key, id) order. A pair already in one component
    // needs no verification: components do not depend on which of their edges were checked.
    for run in runs {
        for (x, a) in run.iter().enumerate() {
            for b in &run[x + 1..] {
                let (a, b) = (a.2, b.2);
                if keys[a].image_id != keys[b].image_id || uf.find(a) == uf.find(b) {
                    continue;
                }
                if let (Some(sa), Some(sb)) = (set_of(a), set_of(b))
                    && jaccard(sa, sb) >= threshold
                {
                    uf.union(a, b);
                }
            }
        }
    }
    Ok(())
}

/// The normal forms of one item.
struct Normal {
    question: String,
    answer: String,
    exact_key: [u8; 32],
}

impl Normal {
    fn new(question: &str, answer: &str, image_id: Option<&str>) -> Normal {
        let question = exact_normal_form(question);
        let answer = exact_normal_form(answer);
        let mut h = Sha256::new();
        h.update(b"sdc.dedup.exact.v1\0");
        for field in [question.as_str(), answer.as_str()] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
        match image_id {
            None => h.update([0]),
            Some(id) => {
                h.update([1]);
                h.update((id.len() as u64).to_le_bytes());
                h.update(id.as_bytes());
            }
        }
        Normal { question, answer, exact_key: h.finalize().into() }
    }

    /// Shingles are computed from the exact normal form, so exact duplicates have the same ones.
    fn shingles(&self, task_type: &str) -> Vec<u64> {
        shingles(&self.question, &self.answer, is_code_task(task_type))
    }
}

fn is_code_task(task_type: &str) -> bool {
    matches!(task_type, "function_completion" | "code_generation")
}

/// NFKC, `\r\n` as `\n`, every run of whitespace within a line as one space, lines trimmed,
/// blank lines dropped. Lines are kept because code fences are recognised by line.
pub fn exact_normal_form(text: &str) -> String {
    // ASCII is its own NFKC (and NFKD) form; most generated text is ASCII.
    let normalized: String;
    let text = if text.is_ascii() {
        text
    } else {
        normalized = text.nfkc().collect();
        &normalized
    };
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut words = line.split_whitespace().peekable();
        if words.peek().is_none() {
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
        }
        for (k, w) in words.enumerate() {
            if k > 0 {
                out.push(' ');
            }
            out.push_str(w);
        }
    }
    out
}

/// The sorted, distinct shingle hashes of an item (in exact normal form).
///
/// Each text is cut into prose and code segments: fenced blocks are code, the rest prose, except
/// that a code task's answer without any fence is code throughout. Each segment gives its own
/// 5-grams of tokens (a segment shorter than 5 tokens gives one shingle of all its tokens),
/// tagged with field (question/answer) and kind (prose/code). A token is hashed with xxh3, a
/// shingle is the xxh3 of its tag and its tokens' hashes.
pub fn shingles(question: &str, answer: &str, code_task: bool) -> Vec<u64> {
    let mut out = Vec::new();
    let mut tokens: Vec<u64> = Vec::new();
    let mut word = String::new();
    for (field, text) in [(0u8, question), (1u8, answer)] {
        let whole_code = field == 1 && code_task && !text.lines().any(is_fence);
        let mut in_code = whole_code;
        for line in text.lines() {
            if !whole_code && is_fence(line) {
                push_shingles(&mut out, field, in_code, &tokens);
                tokens.clear();
                in_code = !in_code;
                continue;
            }
            // Neither tokenizer lets a token span a line break, so lines can be tokenized alone.
            if in_code {
                for_each_code_token(line, |t| tokens.push(xxh3_64(t.as_bytes())));
            } else {
                for_each_prose_token(line, &mut word, |t| tokens.push(xxh3_64(t.as_bytes())));
            }
        }
        push_shingles(&mut out, field, in_code, &tokens);
        tokens.clear();
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn is_fence(line: &str) -> bool {
    line.trim_start().starts_with("```")
}

fn push_shingles(out: &mut Vec<u64>, field: u8, code: bool, tokens: &[u64]) {
    if tokens.is_empty() {
        return;
    }
    let mut bytes = [0u8; 1 + 8 * SHINGLE];
    bytes[0] = field << 1 | u8::from(code);
    for gram in tokens.windows(SHINGLE.min(tokens.len())) {
        for (k, t) in gram.iter().enumerate() {
            bytes[1 + 8 * k..9 + 8 * k].copy_from_slice(&t.to_le_bytes());
        }
        out.push(xxh3_64(&bytes[..1 + 8 * gram.len()]));
    }
}

/// Lowercase words of letters and digits; diacritics stripped (NFKD, combining marks dropped),
/// digits set to `0`, everything else a separator.
pub fn prose_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for_each_prose_token(text, &mut String::new(), |t| tokens.push(t.to_string()));
    tokens
}

fn for_each_prose_token(text: &str, word: &mut String, mut emit: impl FnMut(&str)) {
    let mut push = |c: char, word: &mut String| {
        if c.is_numeric() {
            word.push('0');
        } else if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            emit(word);
            word.clear();
        }
    };
    word.clear();
    if text.is_ascii() {
        text.chars().for_each(|c| push(c, word));
    } else {
        text.nfkd().filter(|&c| !is_combining_mark(c)).for_each(|c| push(c, word));
    }
    push(' ', word);
}

/// Identifiers and numbers (runs of letters, digits and `_`, case kept) and every other
/// non-whitespace, non-control character as a token of its own.
pub fn code_tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for_each_code_token(text, |t| tokens.push(t.to_string()));
    tokens
}

fn for_each_code_token(text: &str, mut emit: impl FnMut(&str)) {
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() || c == '_' {
            start.get_or_insert(i);
            continue;
        }
        if let Some(s) = start.take() {
            emit(&text[s..i]);
        }
        if !c.is_whitespace() && !c.is_control() {
            emit(&text[i..i + c.len_utf8()]);
        }
    }
    if let Some(s) = start {
        emit(&text[s..]);
    }
}

/// Jaccard similarity of two sorted, distinct sets; 0 when both are empty (nothing to compare).
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - common;
    if union == 0 { 0.0 } else { common as f64 / union as f64 }
}

fn image_tag(image_id: Option<&str>) -> u64 {
    match image_id {
        None => 0,
        Some(id) => xxh3_64_with_seed(id.as_bytes(), 1) | 1,
    }
}

const MERSENNE_31: u64 = (1 << 31) - 1;

/// Universal hashes `h_i(x) = (a_i·x + b_i) mod (2³¹ − 1)`, `a_i ∈ [1, p)`, `b_i ∈ [0, p)`,
/// derived from (seed, i) by xxh3: permutation `i` is the same whatever the signature length.
///
/// datatrove uses the prime 2⁶¹ − 1; 2³¹ − 1 keeps every product within 64 bits, so the loop
/// vectorizes (2.8 times faster here without any target feature). The smaller range costs
/// nothing that matters: a signature only chooses which pairs are verified, and verification
/// compares the full 64-bit shingle hashes. Two distinct shingles of one pair collide mod p
/// with probability about 10⁻⁴ for sets of 500, which moves one MinHash row, not a decision.
pub struct Permutations {
    a: Vec<u32>,
    b: Vec<u32>,
}

impl Permutations {
    pub fn new(seed: u64, count: usize) -> Permutations {
        let draw = |label: &[u8], i: usize| {
            let mut bytes = label.to_vec();
            bytes.extend_from_slice(&(i as u64).to_le_bytes());
            xxh3_64_with_seed(&bytes, seed)
        };
        // Both values are below 2³¹, so the casts are exact.
        Permutations {
            a: (0..count).map(|i| (1 + draw(b"minhash.a", i) % (MERSENNE_31 - 1)) as u32).collect(),
            b: (0..count).map(|i| (draw(b"minhash.b", i) % MERSENNE_31) as u32).collect(),
        }
    }

    /// The MinHash signature of a shingle set: per permutation, the least hash value.
    pub fn signature(&self, shingles: &[u64]) -> Vec<u32> {
        let mut signature = vec![u32::MAX; self.a.len()];
        for &s in shingles {
            let x = mod_mersenne((s & MERSENNE_31) + (s >> 31 & MERSENNE_31) + (s >> 62));
            for ((slot, &a), &b) in signature.iter_mut().zip(&self.a).zip(&self.b) {
                let h = mod_mersenne(u64::from(a) * u64::from(x) + u64::from(b));
                *slot = (*slot).min(h);
            }
        }
        signature
    }
}

/// `v mod (2³¹ − 1)` for `v ≤ (2³¹ − 2)² + 2³¹ − 2`, by folding (`2³¹ ≡ 1`): `v & p ≤ p` and
/// `v >> 31 < p − 1`, so one subtraction is enough.
fn mod_mersenne(v: u64) -> u32 {
    let folded = (v & MERSENNE_31) + (v >> 31);
    (if folded >= MERSENNE_31 { folded - MERSENNE_31 } else { folded }) as u32
}

/// Union-find whose root is always the smallest index of its component.
struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> UnionFind {
        UnionFind { parent: (0..n).collect() }
    }

    fn find(&mut self, mut x: usize) -> usize {
        let mut root = x;
        while self.parent[root] != root {
            root = self.parent[root];
        }
        while self.parent[x] != root {
            let next = self.parent[x];
            self.parent[x] = root;
            x = next;
        }
        root
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        let (low, high) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[high] = low;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn item(id: &str, question: &str, answer: &str) -> DedupItem {
        DedupItem {
            id: id.to_string(),
            task_type: "qa".to_string(),
            question: question.to_string(),
            answer: answer.to_string(),
            image_id: None,
        }
    }

    fn with_image(mut item: DedupItem, image: &str) -> DedupItem {
        item.image_id = Some(image.to_string());
        item
    }

    const QUESTION: &str =
        "What does the Hadamard gate do to a qubit that starts in the computational basis state zero?";
    const ANSWER: &str = "The Hadamard gate maps the basis state zero to an equal superposition of zero and one, with \
        both amplitudes equal to one over the square root of two. Measuring the qubit afterwards gives zero or one \
        with probability one half each. Applying the gate a second time undoes the first application, because the \
        Hadamard gate is its own inverse, and the qubit returns to the state zero. In Qiskit the gate is added to a \
        circuit with the h method, and the resulting statevector can be inspected with the Statevector class from \
        the quantum_info module, which shows the two equal amplitudes directly.";

    fn removed_ids(r: &DedupResult) -> Vec<(&str, &str, DupKind)> {
        r.removed.iter().map(|d| (d.id.as_str(), d.duplicate_of.as_str(), d.kind)).collect()
    }

    #[test]
    fn the_flagship_threshold_uses_ten_bands_of_six_rows() {
        let p = LshParams::for_threshold(0.85);
        assert_eq!(p, LshParams { bands: 10, rows: 6 });
        assert!(p.candidate_probability(0.85) >= 0.99);
        assert!(p.candidate_probability(0.425) <= 0.1);
        // Other high thresholds get a layout of their own that meets the same two conditions.
        for t in [0.8, 0.9, 0.95, 1.0] {
            let p = LshParams::for_threshold(t);
            assert!(p.candidate_probability(t) >= 0.99 && p.candidate_probability(t / 2.0) <= 0.1, "{t}: {p:?}");
        }
        // Low ones cannot have both within 256 permutations; the compromise still finds most.
        for t in [0.5, 0.6] {
            let p = LshParams::for_threshold(t);
            assert!(p.candidate_probability(t) >= 0.9 && p.permutations() <= 256, "{t}: {p:?}");
        }
    }

    #[test]
    fn exact_duplicates_differ_only_in_whitespace() {
        // Whitespace within a line and blank lines do not matter; line breaks do (they delimit
        // code), so a re-wrapped text is left to the near pass.
        let spaced = format!("\r\n{}  \r\n\r\n", ANSWER.replace(' ', " \t "));
        let items = [item("b", QUESTION, ANSWER), item("a", &format!("  {QUESTION}\r\n"), &spaced)];
        let r = dedup(&items, 0.85, 1);
        assert_eq!(r.kept, ["a"]);
        assert_eq!(removed_ids(&r), [("b", "a", DupKind::Exact)]);
        assert_eq!(r.removed[0].similarity, 1.0);
    }

    #[test]
    fn a_paraphrase_with_two_words_changed_is_a_near_duplicate() {
        let changed = ANSWER.replace("inspected", "examined").replace("directly", "immediately");
        let case = QUESTION.to_uppercase();
        let items = [item("x1", QUESTION, ANSWER), item("x2", QUESTION, &changed), item("x3", &case, ANSWER)];
        let r = dedup(&items, 0.85, 1);
        assert_eq!(r.kept, ["x1"]);
        assert_eq!(removed_ids(&r), [("x2", "x1", DupKind::Near), ("x3", "x1", DupKind::Near)]);
        let similarity = r.removed[0].similarity;
        assert!((0.85..1.0).contains(&similarity), "{similarity}");
        assert_eq!(r.removed[1].similarity, 1.0, "case does not matter to prose shingles");
        // A short item is more sensitive: one word in ten words is far below 0.85, but found at
        // a threshold suited to short texts.
        let short = [
            item("s1", "How do I measure all qubits of a circuit in Qiskit at the end?", "Call measure_all on it."),
            item(
                "s2",
                "How do I measure all qubits of a circuit in Qiskit at the very end?",
                "Call measure_all on it.",
            ),
        ];
        assert!(dedup(&short, 0.85, 1).removed.is_empty());
        assert_eq!(dedup(&short, 0.6, 1).kept, ["s1"]);
    }

    #[test]
    fn distinct_questions_on_one_topic_are_kept() {
        let items = [
            item(
                "q1",
                "What does the Hadamard gate do to a qubit in state zero?",
                "It creates an equal superposition of zero and one.",
            ),
            item("q2", "What does the Pauli X gate do to a qubit in state zero?", "It flips the qubit to state one."),
            item("q3", "Why is the Hadamard gate its own inverse?", "Because H times H is the identity matrix."),
            item(
                "q4",
                "How do you add a Hadamard gate to a Qiskit circuit?",
                "Call the h method with the qubit index.",
            ),
        ];
        let r = dedup(&items, 0.85, 1);
        assert_eq!(r.kept.len(), 4);
        // Also at a permissive threshold.
        assert_eq!(dedup(&items, 0.5, 1).kept.len(), 4);
    }

    #[test]
    fn items_about_different_images_are_never_duplicates() {
        let items = [
            with_image(item("a", QUESTION, ANSWER), "img1"),
            with_image(item("b", QUESTION, ANSWER), "img2"),
            item("c", QUESTION, ANSWER),
            with_image(item("d", QUESTION, ANSWER), "img1"),
        ];
        let r = dedup(&items, 0.85, 1);
        assert_eq!(r.kept, ["a", "b", "c"]);
        assert_eq!(removed_ids(&r), [("d", "a", DupKind::Exact)]);
        // Not as near duplicates either.
        let changed = ANSWER.replace("inspected", "examined");
        let items =
            [with_image(item("a", QUESTION, ANSWER), "img1"), with_image(item("b", QUESTION, &changed), "img2")];
        assert_eq!(dedup(&items, 0.5, 1).kept.len(), 2);
    }

    #[test]
    fn a_chain_points_every_member_at_the_kept_item() {
        // c1 edits four words of c0; c2 edits four more of c1. Neighbours are near duplicates,
        // the ends are not, yet all three form one cluster and c2 records c0, not c1.
        let words: Vec<&str> = ANSWER.split(' ').collect();
        let edit = |w: &mut Vec<String>, from: usize| w.iter_mut().skip(from).take(4).for_each(|x| x.push('x'));
        let mut w: Vec<String> = words.iter().map(|x| x.to_string()).collect();
        let c0 = w.join(" ");
        edit(&mut w, 20);
        let c1 = w.join(" ");
        edit(&mut w, 60);
        let c2 = w.join(" ");
        let j = |a: &str, b: &str| jaccard(&shingles(QUESTION, a, false), &shingles(QUESTION, b, false));
        assert!(j(&c0, &c1) >= 0.85 && j(&c1, &c2) >= 0.85 && j(&c0, &c2) < 0.85);
        let items = [item("c0", QUESTION, &c0), item("c1", QUESTION, &c1), item("c2", QUESTION, &c2)];
        let r = dedup(&items, 0.85, 1);
        assert_eq!(r.kept, ["c0"]);
        assert_eq!(removed_ids(&r), [("c1", "c0", DupKind::Near), ("c2", "c0", DupKind::Near)]);
        assert_eq!(r.removed[1].similarity, j(&c0, &c2), "the similarity to the kept item, below the threshold");
    }

    #[test]
    fn code_keeps_its_punctuation_and_case() {
        assert_eq!(code_tokens("qc.cx(0, 1)"), ["qc", ".", "cx", "(", "0", ",", "1", ")"]);
        assert_eq!(prose_tokens("Qubits: élan 42, café!"), ["qubits", "elan", "00", "cafe"]);
        // `a + b` and `a - b` differ as code, although prose would read both as "a b".
        let plus = shingles("", "def f(a, b):\n    return a + b", true);
        let minus = shingles("", "def f(a, b):\n    return a - b", true);
        assert_ne!(plus, minus);
        let plus_prose = shingles("", "def f(a, b):\n    return a + b", false);
        let minus_prose = shingles("", "def f(a, b):\n    return a - b", false);
        assert_eq!(plus_prose, minus_prose);
        // Fences mark code inside prose.
        let fenced = shingles("", "Use this:\n```python\nreturn a + b\n```\nDone.", false);
        let fenced_minus = shingles("", "Use this:\n```python\nreturn a - b\n```\nDone.", false);
        assert_ne!(fenced, fenced_minus);
    }

    #[test]
    fn signatures_are_stable() {
        // Pinned: a change here changes which items every existing build deduplicates.
        let s = shingles(QUESTION, ANSWER, false);
        let signature = Permutations::new(0x5dc, 60).signature(&s);
        assert_eq!(signature[..4], [2847128, 45827860, 22777943, 28156243]);
        // Permutation i does not depend on the signature length.
        assert_eq!(Permutations::new(0x5dc, 8).signature(&s)[..], signature[..8]);
        assert_eq!(jaccard(&s, &s), 1.0);
        assert_eq!(jaccard(&[], &[]), 0.0);
    }

    #[test]
    fn the_mersenne_reduction_is_exact() {
        let p = MERSENNE_31;
        for v in [0, 1, p - 1, p, p + 1, 2 * p, 2 * p + 3, (p - 1) * (p - 2), (p - 2) * (p - 2) + (p - 2)] {
            assert_eq!(u64::from(mod_mersenne(v)), v % p, "{v}");
        }
    }

    #[test]
    fn repeated_ids_count_once() {
        let items = [item("a", QUESTION, ANSWER), item("a", QUESTION, ANSWER)];
        let r = dedup(&items, 0.85, 1);
        assert_eq!(r.kept, ["a"]);
        assert!(r.removed.is_empty());
    }

    fn arb_items() -> impl Strategy<Value = Vec<DedupItem>> {
        // Few base texts and small edits, so exact and near duplicates are common.
        let words = ["qubit", "gate", "circuit", "measure", "state", "phase", "Hadamard", "basis", "the", "a", "of"];
        let text = proptest::collection::vec(0..words.len(), 3..40)
            .prop_map(move |w| w.into_iter().map(|i| words[i]).collect::<Vec<_>>().join(" "));
        let base = proptest::collection::vec((text.clone(), text), 1..6);
        (base, proptest::collection::vec((0usize..6, 0usize..3, proptest::option::of(0u8..2), any::<bool>()), 1..30))
            .prop_map(|(base, picks)| {
                picks
                    .into_iter()
                    .enumerate()
                    .map(|(k, (b, edit, image, code))| {
                        let (q, a) = &base[b % base.len()];
                        let a = match edit {
                            0 => a.clone(),
                            1 => format!("{a} again"),
                            _ => a.replacen("qubit", "qubits", 1),
                        };
                        DedupItem {
                            id: format!("{:04x}", xxh3_64(&(k as u64).to_le_bytes()) & 0xffff),
                            task_type: if code { "code_generation" } else { "qa" }.to_string(),
                            question: q.clone(),
                            answer: a,
                            image_id: image.map(|i| format!("img{i}")),
                        }
                    })
                    .collect()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn independent_of_input_order(items in arb_items(), seed in any::<u64>(), threshold in 0.5f64..1.0) {
            let r = dedup(&items, threshold, seed);
            let mut reversed = items.clone();
            reversed.reverse();
            prop_assert_eq!(&dedup(&reversed, threshold, seed), &r);
            prop_assert_eq!(&dedup(&items, threshold, seed), &r, "deterministic");
        }

        #[test]
        fn results_are_consistent(items in arb_items(), seed in any::<u64>(), threshold in 0.5f64..1.0) {
            let r = dedup(&items, threshold, seed);
            let mut ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            let mut all: Vec<&str> = r.kept.iter().chain(r.removed.iter().map(|d| &d.id)).map(String::as_str).collect();
            all.sort_unstable();
            prop_assert_eq!(all, ids, "every item is kept or removed, once");
            prop_assert!(r.kept.windows(2).all(|w| w[0] < w[1]));
            prop_assert!(r.removed.windows(2).all(|w| w[0].id < w[1].id));
            let image = |id: &str| items.iter().find(|i| i.id == id).map(|i| i.image_id.clone());
            for d in &r.removed {
                prop_assert!(r.kept.binary_search(&d.duplicate_of).is_ok(), "points at a kept item: {:?}", d);
                prop_assert!(d.duplicate_of < d.id, "the kept item is the smallest id");
                prop_assert_eq!(image(&d.id), image(&d.duplicate_of), "same image");
                prop_assert!((0.0..=1.0).contains(&d.similarity));
            }
        }
    }
}
