//! Which charts the analysis draws, from the statistics alone; a chart whose data the archive
//! does not record is left out (the statistics say why in `missing`).

use super::plot::{BLUE, Bars, GREEN, GREY, Histogram, ORANGE, Plot, PlotError, SKY, Series, VERMILION};
use super::stats::{Count, Statistics};

/// Reasons shown in the rejection chart; the rest are in `statistics.json`.
const TOP_REASONS: usize = 15;

pub(super) fn charts(s: &Statistics) -> Result<Vec<Plot>, PlotError> {
    let mut plots = vec![
        Bars {
            name: "splits",
            title: "Samples per split",
            unit: "samples",
            rows: s.splits.iter().map(|x| x.split.clone()).collect(),
            series: modality_series(s.splits.iter().map(|x| (x.modality.text, x.modality.image))),
        }
        .draw()?,
        by_modality("types", "Samples per task type", &s.types)?,
        by_modality("categories", "Samples per category", &s.categories)?,
        Bars {
            name: "modality",
            title: "Samples by modality, per split",
            unit: "samples",
            rows: vec!["text only".into(), "with an image".into()],
            series: s
                .splits
                .iter()
                .zip([BLUE, ORANGE, GREEN, SKY, VERMILION, GREY].iter().cycle())
                .map(|(x, c)| Series {
                    name: x.split.clone(),
                    color: *c,
                    values: vec![x.modality.text, x.modality.image],
                })
                .collect(),
        }
        .draw()?,
    ];
    if let Some(f) = &s.funnel {
        plots.push(
            Bars {
                name: "funnel",
                title: "From planned to accepted, per kind of item",
                unit: "items (planned = accepted + rejected + failed)",
                rows: f.kinds.iter().map(|k| k.kind.clone()).collect(),
                series: outcome_series(f.kinds.iter().map(|k| (k.accepted, k.rejected, k.failed)), "accepted"),
            }
            .draw()?,
        );
        plots.push(
            Bars {
                name: "stages",
                title: "What each stage received, in pipeline order",
                unit: "items (received = passed on + rejected + failed)",
                rows: f.stages.iter().map(|x| x.stage.clone()).collect(),
                series: outcome_series(f.stages.iter().map(|x| (x.items_out, x.rejected, x.failed)), "passed on"),
            }
            .draw()?,
        );
        let mut reasons: Vec<(String, &str, u64)> = f
            .stages
            .iter()
            .flat_map(|st| {
                st.reasons.iter().map(move |r| (format!("{}: {}", st.stage, r.reason), r.outcome.as_str(), r.count))
            })
            .collect();
        reasons.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        reasons.truncate(TOP_REASONS);
        if !reasons.is_empty() {
            plots.push(
                Bars {
                    name: "rejections",
                    title: "Most frequent reasons items were dropped (stage: reason)",
                    unit: "items",
                    rows: reasons.iter().map(|r| r.0.clone()).collect(),
                    series: vec![
                        Series {
                            name: "rejected".into(),
                            color: ORANGE,
                            values: reasons.iter().map(|r| if r.1 == "failed" { 0 } else { r.2 }).collect(),
                        },
                        Series {
                            name: "failed".into(),
                            color: VERMILION,
                            values: reasons.iter().map(|r| if r.1 == "failed" { r.2 } else { 0 }).collect(),
                        },
                    ],
                }
                .draw()?,
            );
        }
    }
    if let Some(c) = &s.chunks {
        plots.push(
            Histogram {
                name: "chunk_sizes",
                title: "Chunk sizes",
                x_desc: "characters per chunk (text and code)",
                y_desc: "chunks",
                bins: c.histogram.iter().map(|b| (b.from, b.to, b.count)).collect(),
            }
            .draw()?,
        );
    }
    let v = &s.verification;
    if !v.accepted_by_attempts.is_empty() || !v.failed_by_attempts.is_empty() {
        let mut attempts: Vec<u32> =
            v.accepted_by_attempts.iter().chain(&v.failed_by_attempts).map(|a| a.attempts).collect();
        attempts.sort_unstable();
        attempts.dedup();
        let count =
            |list: &[super::stats::AttemptCount], n: u32| list.iter().find(|a| a.attempts == n).map_or(0, |a| a.items);
        plots.push(
            Bars {
                name: "verification",
                title: "Verification attempts",
                unit: "items",
                rows: attempts.iter().map(|n| format!("{n} attempt{}", if *n == 1 { "" } else { "s" })).collect(),
                series: vec![
                    Series {
                        name: "accepted samples (runs of the answer)".into(),
                        color: GREEN,
                        values: attempts.iter().map(|n| count(&v.accepted_by_attempts, *n)).collect(),
                    },
                    Series {
                        name: "failed items (attempts before giving up)".into(),
                        color: VERMILION,
                        values: attempts.iter().map(|n| count(&v.failed_by_attempts, *n)).collect(),
                    },
                ],
            }
            .draw()?,
        );
    }
    if !s.tokens.is_empty() {
        plots.push(
            Bars {
                name: "tokens",
                title: "Tokens per stage (model)",
                unit: "tokens",
                rows: s.tokens.iter().map(|t| format!("{} ({})", t.stage, t.model)).collect(),
                series: vec![
                    Series {
                        name: "prompt".into(),
                        color: SKY,
                        values: s.tokens.iter().map(|t| t.prompt_tokens).collect(),
                    },
                    Series {
                        name: "completion".into(),
                        color: BLUE,
                        values: s.tokens.iter().map(|t| t.completion_tokens).collect(),
                    },
                ],
            }
            .draw()?,
        );
    }
    Ok(plots)
}

fn by_modality(name: &'static str, title: &'static str, counts: &[Count]) -> Result<Plot, PlotError> {
    Bars {
        name,
        title,
        unit: "samples",
        rows: counts.iter().map(|c| c.name.clone()).collect(),
        series: modality_series(counts.iter().map(|c| (c.text, c.image))),
    }
    .draw()
}

fn modality_series(values: impl Iterator<Item = (u64, u64)>) -> Vec<Series> {
    let (text, image): (Vec<u64>, Vec<u64>) = values.unzip();
    vec![
        Series { name: "text only".into(), color: BLUE, values: text },
        Series { name: "with an image".into(), color: ORANGE, values: image },
    ]
}

fn outcome_series(values: impl Iterator<Item = (u64, u64, u64)>, kept: &str) -> Vec<Series> {
    let (mut a, mut r, mut f) = (Vec::new(), Vec::new(), Vec::new());
    for (x, y, z) in values {
        a.push(x);
        r.push(y);
        f.push(z);
    }
    vec![
        Series { name: kept.into(), color: GREEN, values: a },
        Series { name: "rejected".into(), color: ORANGE, values: r },
        Series { name: "failed".into(), color: VERMILION, values: f },
    ]
}
