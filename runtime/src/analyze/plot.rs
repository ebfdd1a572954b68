//! The two kinds of chart the analysis draws — horizontal stacked bars and a histogram — as SVG
//! with plotters, and the same SVG rasterised to PNG with resvg.
//!
//! Both are measured and drawn with one bundled font, DejaVu Sans (`assets/fonts`): plotters
//! measures labels with it through ab_glyph (so label areas fit what is drawn), and resvg's font
//! database holds only it, so the PNG shows exactly the SVG's picture on every machine and
//! nothing is read from the system. The SVG names the family `sans-serif`; a browser without
//! DejaVu Sans substitutes its own, which is the one place the pictures can differ. Output is a
//! function of the data alone: no clock, no randomness, fixed sizes.

use std::sync::{Arc, Once};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// DejaVu Sans 2.37 (Bitstream Vera licence, `assets/fonts/LICENSE-DejaVu.txt`).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
const WIDTH: u32 = 960;
/// Font sizes in plotters' units (the SVG's `font-size` is these divided by 1.24).
const TITLE: f64 = 25.0;
const LABEL: f64 = 17.0;
const VALUE: f64 = 16.0;
/// Row labels longer than this are cut with an ellipsis, so bars keep most of the width.
const MAX_LABEL_PX: u32 = 400;

/// Colours that stay apart for colour-blind readers (Okabe and Ito).
pub const BLUE: RGBColor = RGBColor(0, 114, 178);
pub const ORANGE: RGBColor = RGBColor(230, 159, 0);
pub const GREEN: RGBColor = RGBColor(0, 158, 115);
pub const VERMILION: RGBColor = RGBColor(213, 94, 0);
pub const GREY: RGBColor = RGBColor(153, 153, 153);
pub const SKY: RGBColor = RGBColor(86, 180, 233);

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot draw `{chart}`: {message}")]
    Draw { chart: String, message: String },
}

/// One chart, drawn.
pub struct Plot {
    /// File stem: `<name>.svg`, `<name>.png`.
    pub name: String,
    pub title: String,
    pub svg: String,
    pub png: Vec<u8>,
}

/// Stacked horizontal bars: one row per label (top to bottom), one segment per series.
pub struct Bars<'a> {
    pub name: &'a str,
    pub title: &'a str,
    /// What the bar lengths count, with the unit (the x axis's description).
    pub unit: &'a str,
    pub rows: Vec<String>,
    pub series: Vec<Series>,
}

pub struct Series {
    pub name: String,
    pub color: RGBColor,
    /// One value per row.
    pub values: Vec<u64>,
}

/// Vertical bars over contiguous bins.
pub struct Histogram<'a> {
    pub name: &'a str,
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    /// `[from, to)` and the count, in order.
    pub bins: Vec<(u64, u64, u64)>,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled bytes are a valid font (a unit test draws with them).
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

/// `12345` as `12,345`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Axis ticks: `1.5k`, `2M`.
fn short(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => trim(n as f64 / 1e3, "k"),
        _ => trim(n as f64 / 1e6, "M"),
    }
}

fn trim(v: f64, suffix: &str) -> String {
    let s = format!("{v:.1}");
    format!("{}{suffix}", s.strip_suffix(".0").unwrap_or(&s))
}

/// A round axis end above `max`, leaving room for the value labels.
fn axis_end(max: u64) -> u64 {
    let padded = max + max / 5 + 1;
    let step = super::stats::round_up(padded.div_ceil(8));
    padded.div_ceil(step) * step
}

impl Bars<'_> {
    pub fn draw(&self) -> Result<Plot, PlotError> {
        register_font();
        let rows = self.rows.len().max(1);
        let height = 130 + 38 * rows as u32 + 80;
        let totals: Vec<u64> = (0..self.rows.len())
            .map(|i| self.series.iter().map(|s| s.values.get(i).copied().unwrap_or(0)).sum())
            .collect();
        let end = axis_end(totals.iter().copied().max().unwrap_or(0));
        let svg = render(self.name, height, |root| {
            let labels: Vec<String> = self.rows.iter().map(|r| fit(root, r, MAX_LABEL_PX)).collect();
            let label_width = labels
                .iter()
                .map(|r| root.estimate_text_size(r, &font(LABEL)).map_or(0, |(w, _)| w))
                .max()
                .unwrap_or(0)
                + 16;
            let area = root.titled(self.title, font(TITLE))?;
            let (legend, area) = area.split_vertically(34);
            draw_legend(&legend, &self.series)?;
            let n = self.rows.len();
            let mut chart = ChartBuilder::on(&area)
                .margin_left(8)
                .margin_right(24)
                .x_label_area_size(52)
                .y_label_area_size(label_width)
                // Integer ranges are inclusive in plotters: rows are slots 0..=n-1 (a single
                // row keeps an empty slot above it, since a one-value range has no extent).
                .build_cartesian_2d(0u64..end, (0..if n > 1 { n - 1 } else { 1 }).into_segmented())?;
            let names = &labels;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(n.max(1))
                .y_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(i) => {
                        n.checked_sub(i + 1).and_then(|k| names.get(k)).cloned().unwrap_or_default()
                    }
                    _ => String::new(),
                })
                .x_labels(9)
                .x_label_formatter(&|v| short(*v))
                .x_desc(self.unit)
                .label_style(font(LABEL))
                .axis_desc_style(font(LABEL))
                .light_line_style(RGBColor(235, 235, 235))
                .bold_line_style(RGBColor(210, 210, 210))
                .draw()?;
            // Row 0 is drawn at the top.
            let slot = |i: usize| n - 1 - i;
            let mut start = vec![0u64; n];
            for s in &self.series {
                let bars = (0..n).filter_map(|i| {
                    let v = s.values.get(i).copied().unwrap_or(0);
                    if v == 0 {
                        return None;
                    }
                    let (from, to) = (start[i], start[i] + v);
                    start[i] = to;
                    let mut r = Rectangle::new(
                        [(from, SegmentValue::Exact(slot(i))), (to, SegmentValue::Exact(slot(i) + 1))],
                        s.color.filled(),
                    );
                    r.set_margin(5, 5, 0, 0);
                    Some(r)
                });
                chart.draw_series(bars)?;
            }
            // The total at the end of each bar, a few pixels after it.
            let style = font(VALUE).pos(Pos::new(HPos::Left, VPos::Center));
            chart.draw_series(totals.iter().enumerate().map(|(i, t)| {
                EmptyElement::at((*t, SegmentValue::CenterOf(slot(i))))
                    + Text::new(thousands(*t), (5, 0), style.clone())
            }))?;
            Ok(())
        })?;
        finish(self.name, self.title, svg)
    }
}

impl Histogram<'_> {
    pub fn draw(&self) -> Result<Plot, PlotError> {
        register_font();
        let x_end = self.bins.last().map_or(1, |b| b.1.max(1));
        let y_end = axis_end(self.bins.iter().map(|b| b.2).max().unwrap_or(0));
        let svg = render(self.name, 480, |root| {
            let area = root.titled(self.title, font(TITLE))?;
            let mut chart = ChartBuilder::on(&area)
                .margin(16)
                .margin_right(28)
                .x_label_area_size(52)
                .y_label_area_size(64)
                .build_cartesian_2d(0u64..x_end, 0u64..y_end)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(10)
                .y_labels(8)
                .x_label_formatter(&|v| short(*v))
                .y_label_formatter(&|v| short(*v))
                .x_desc(self.x_desc)
                .y_desc(self.y_desc)
                .label_style(font(LABEL))
                .axis_desc_style(font(LABEL))
                .light_line_style(RGBColor(235, 235, 235))
                .bold_line_style(RGBColor(210, 210, 210))
                .draw()?;
            chart.draw_series(self.bins.iter().filter(|b| b.2 > 0).map(|&(from, to, count)| {
                let mut r = Rectangle::new([(from, 0), (to, count)], BLUE.filled());
                r.set_margin(0, 0, 1, 1);
                r
            }))?;
            let style = font(VALUE).pos(Pos::new(HPos::Center, VPos::Bottom));
            chart.draw_series(self.bins.iter().filter(|b| b.2 > 0).map(|&(from, to, count)| {
                EmptyElement::at((from + (to - from) / 2, count)) + Text::new(thousands(count), (0, -3), style.clone())
            }))?;
            Ok(())
        })?;
        finish(self.name, self.title, svg)
    }
}

type DrawResult = Result<(), Box<dyn std::error::Error + 'static>>;

fn draw_legend(area: &DrawingArea<SVGBackend<'_>, Shift>, series: &[Series]) -> DrawResult {
    // Only series that have something to show; one series needs no legend.
    let shown: Vec<&Series> = series.iter().filter(|s| s.values.iter().any(|v| *v > 0)).collect();
    if shown.len() < 2 {
        return Ok(());
    }
    let mut x = 16i32;
    for s in shown {
        area.draw(&Rectangle::new([(x, 9), (x + 16, 25)], s.color.filled()))?;
        area.draw(&Text::new(s.name.clone(), (x + 22, 17), font(LABEL).pos(Pos::new(HPos::Left, VPos::Center))))?;
        let w = area.estimate_text_size(&s.name, &font(LABEL)).map_or(60, |(w, _)| w as i32);
        x += 22 + w + 28;
    }
    Ok(())
}

/// `text`, cut in the middle with an ellipsis to at most `max` pixels wide. The middle, because
/// alike reasons share their beginning ("plan: nothing to test a mined function against: …")
/// and differ at the end, where the name of what was missing is.
fn fit(area: &DrawingArea<SVGBackend<'_>, Shift>, text: &str, max: u32) -> String {
    let width = |t: &str| area.estimate_text_size(t, &font(LABEL)).map_or(0, |(w, _)| w);
    if width(text) <= max {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    for keep in (1..chars.len()).rev() {
        let head = keep * 2 / 5;
        let tail = keep - head;
        let cut = format!(
            "{}…{}",
            chars[..head].iter().collect::<String>().trim_end(),
            chars[chars.len() - tail..].iter().collect::<String>().trim_start()
        );
        if width(&cut) <= max {
            return cut;
        }
    }
    "…".to_string()
}

fn render(
    name: &str,
    height: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult,
) -> Result<String, PlotError> {
    let error = |e: &dyn std::fmt::Display| PlotError::Draw { chart: name.to_string(), message: e.to_string() };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| error(&e))?;
        draw(&root).map_err(|e| error(&e))?;
        root.present().map_err(|e| error(&e))?;
    }
    Ok(svg)
}

fn finish(name: &str, title: &str, svg: String) -> Result<Plot, PlotError> {
    let png = rasterise(&svg).map_err(|message| PlotError::Draw { chart: name.to_string(), message })?;
    Ok(Plot { name: name.to_string(), title: title.to_string(), svg, png })
}

/// The SVG as PNG, at its own size, with only the bundled font.
fn rasterise(svg: &str) -> Result<Vec<u8>, String> {
    use resvg::{tiny_skia, usvg};
    let mut db = usvg::fontdb::Database::new();
    db.load_font_data(FONT.to_vec());
    db.set_sans_serif_family("DejaVu Sans");
    let options = usvg::Options { fontdb: Arc::new(db), font_family: "DejaVu Sans".into(), ..usvg::Options::default() };
    let tree = usvg::Tree::from_str(svg, &options).map_err(|e| e.to_string())?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("the picture has no area")?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::identity(), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars() -> Bars<'static> {
        Bars {
            name: "t",
            title: "Samples per type",
            unit: "samples",
            rows: vec!["qa".into(), "code_generation".into()],
            series: vec![
                Series { name: "text only".into(), color: BLUE, values: vec![3, 1] },
                Series { name: "with an image".into(), color: ORANGE, values: vec![2, 0] },
            ],
        }
    }

    #[test]
    fn the_same_data_draws_the_same_bytes() {
        let (a, b) = (bars().draw().expect("draw"), bars().draw().expect("draw"));
        assert_eq!(a.svg, b.svg);
        assert_eq!(a.png, b.png);
        assert!(a.svg.contains("code_generation") && a.svg.contains("Samples per type"), "{}", a.svg);
        assert!(a.png.starts_with(b"\x89PNG"));
        let h =
            Histogram { name: "h", title: "x", x_desc: "chars", y_desc: "chunks", bins: vec![(0, 10, 2), (10, 20, 0)] };
        assert_eq!(h.draw().expect("draw").png, h.draw().expect("draw").png);
    }

    #[test]
    fn numbers_are_readable() {
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
        assert_eq!(short(1500), "1.5k");
        assert_eq!(short(2_000_000), "2M");
        assert_eq!(axis_end(0), 1);
        assert_eq!(axis_end(100), 140);
    }
}
