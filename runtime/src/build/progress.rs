//! Progress while a build runs: a bar per stage on a terminal (indicatif), one line per stage
//! when stderr is not a terminal, nothing under `--quiet`. Progress goes to stderr only and never
//! into anything the build writes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Lines,
    Quiet,
}

pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
    bars: Mutex<BTreeMap<String, ProgressBar>>,
    counts: Mutex<BTreeMap<String, (u64, u64)>>,
}

impl Progress {
    pub fn new(mode: Mode) -> Progress {
        let target = if mode == Mode::Bars { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        Progress {
            mode,
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(BTreeMap::new()),
            counts: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn note(&self, message: impl AsRef<str>) {
        match self.mode {
            Mode::Bars => {
                let _ = self.multi.println(message.as_ref());
            }
            Mode::Lines => eprintln!("{}", message.as_ref()),
            Mode::Quiet => {}
        }
    }

    pub fn start(&self, stage: &str, total: u64) {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).insert(stage.to_string(), (0, total));
        if self.mode != Mode::Bars {
            return;
        }
        let bar = self.multi.add(ProgressBar::new(total));
        let style = ProgressStyle::with_template("{prefix:>16} [{bar:32}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(stage.to_string());
        self.bars.lock().unwrap_or_else(|p| p.into_inner()).insert(stage.to_string(), bar);
    }

    pub fn tick(&self, stage: &str) {
        if let Some(c) = self.counts.lock().unwrap_or_else(|p| p.into_inner()).get_mut(stage) {
            c.0 += 1;
        }
        if let Some(bar) = self.bars.lock().unwrap_or_else(|p| p.into_inner()).get(stage) {
            bar.inc(1);
        }
    }

    pub fn finish(&self, stage: &str) {
        if let Some(bar) = self.bars.lock().unwrap_or_else(|p| p.into_inner()).get(stage) {
            bar.finish();
        }
        if self.mode == Mode::Lines
            && let Some((done, _)) = self.counts.lock().unwrap_or_else(|p| p.into_inner()).get(stage)
        {
            eprintln!("{stage:>16}: {done} items");
        }
    }
}
