//! The demo as a picture: new connections per second through each gateway (and those that
//! failed) over the demo's time, with its moments marked (the black hole, the restore, the
//! failback), drawn as an SVG with `plotters`. Text is SVG `<text>`: no font files needed.
//!
//! Each round of test connections is known only as a whole (its start, its end, how many went
//! through which gateway), so its connections are spread evenly over the seconds it spans.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One round of test connections.
#[derive(Debug, Clone, PartialEq)]
struct Round {
    /// Seconds since the demo started.
    start_s: f64,
    end_s: f64,
    /// Successful connections per gateway (in [`Timeline::gateways`] order).
    ok: Vec<usize>,
    failed: usize,
}

/// A moment of the demo, drawn as a labelled vertical line.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// Seconds since the demo started.
    pub at_s: f64,
    /// What happened (`black hole isp1`).
    pub label: String,
}

/// The connections the demo made, per round, and its moments.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    gateways: Vec<String>,
    rounds: Vec<Round>,
    marks: Vec<Mark>,
}

/// The picture could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing the timeline: {0}")]
pub struct DrawError(String);

fn draw_err(e: impl std::fmt::Display) -> DrawError {
    DrawError(e.to_string())
}

/// Series colours: gateways in order, then the failed connections in red.
const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];
const FAILED: RGBColor = RGBColor(214, 39, 40);

impl Timeline {
    /// An empty timeline for these gateways (the series, in this order).
    pub fn new(gateways: Vec<String>) -> Timeline {
        Timeline {
            gateways,
            ..Timeline::default()
        }
    }

    /// A round from `start_s` to `end_s`: `ok[i]` connections through gateway `i`, `failed`
    /// that failed.
    pub fn round(&mut self, start_s: f64, end_s: f64, ok: Vec<usize>, failed: usize) {
        self.rounds.push(Round {
            start_s,
            end_s: end_s.max(start_s),
            ok,
            failed,
        });
    }

    /// A moment to mark.
    pub fn mark(&mut self, at_s: f64, label: impl Into<String>) {
        self.marks.push(Mark {
            at_s,
            label: label.into(),
        });
    }

    /// Whether a round was recorded.
    pub fn is_empty(&self) -> bool {
        self.rounds.is_empty()
    }

    /// The first whole second with a round in it (the lab's set-up before is left out).
    fn first_second(&self) -> usize {
        let first = self
            .rounds
            .iter()
            .map(|r| r.start_s)
            .fold(f64::INFINITY, f64::min);
        if first.is_finite() {
            first.max(0.0).floor() as usize
        } else {
            0
        }
    }

    /// Seconds covered: up to the end of the last round or mark, whole seconds.
    fn seconds(&self) -> usize {
        let end = self
            .rounds
            .iter()
            .map(|r| r.end_s)
            .chain(self.marks.iter().map(|m| m.at_s))
            .fold(0.0f64, f64::max);
        (end.ceil() as usize).max(1)
    }

    /// Connections per second: one row per gateway, then the failed ones; `rows[s][k]` is
    /// second `k`. A round's connections are spread evenly over the time it took.
    pub fn per_second(&self) -> Vec<Vec<f64>> {
        let n = self.seconds();
        let mut rows = vec![vec![0.0; n]; self.gateways.len() + 1];
        for r in &self.rounds {
            let counts =
                r.ok.iter()
                    .copied()
                    .chain(std::iter::repeat(0))
                    .take(self.gateways.len())
                    .chain([r.failed]);
            let span = r.end_s - r.start_s;
            for (row, count) in rows.iter_mut().zip(counts) {
                if count == 0 {
                    continue;
                }
                if span <= 0.0 {
                    if let Some(c) = row.get_mut(r.start_s.max(0.0) as usize) {
                        *c += count as f64;
                    }
                    continue;
                }
                let first = r.start_s.max(0.0).floor() as usize;
                for (k, c) in row.iter_mut().enumerate().skip(first) {
                    let overlap = (r.end_s.min(k as f64 + 1.0) - r.start_s.max(k as f64)).max(0.0);
                    if overlap <= 0.0 && k as f64 >= r.end_s {
                        break;
                    }
                    *c += count as f64 * overlap / span;
                }
            }
        }
        rows
    }

    /// The picture as an SVG document, `width` × `height` pixels.
    pub fn svg(&self, title: &str, (width, height): (u32, u32)) -> Result<String, DrawError> {
        let rows = self.per_second();
        let top = rows.iter().flatten().copied().fold(1.0f64, f64::max);
        // Head room for the legend and the marks' labels.
        let top = (top * 1.4).ceil();
        let (from, to) = (self.first_second(), self.seconds());
        let x = from as f64..to as f64;
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
            root.fill(&WHITE).map_err(draw_err)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(x.clone(), 0.0..top)
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .x_desc("seconds since the demo started")
                .y_desc("new connections per second")
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(draw_err)?;
            let names = self.gateways.iter().map(String::as_str).chain(["failed"]);
            for (i, (row, name)) in rows.iter().zip(names).enumerate() {
                let colour = if i == self.gateways.len() {
                    FAILED
                } else {
                    COLOURS[i % COLOURS.len()]
                };
                // A step per second: the rate holds over the whole second.
                let points = row
                    .iter()
                    .enumerate()
                    .skip(from)
                    .flat_map(|(k, &v)| [(k as f64, v), (k as f64 + 1.0, v)]);
                chart
                    .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                    .map_err(draw_err)?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
            }
            for (i, m) in self.marks.iter().enumerate() {
                let style = BLACK.mix(0.7).stroke_width(1);
                chart
                    .draw_series([PathElement::new(vec![(m.at_s, 0.0), (m.at_s, top)], style)])
                    .map_err(draw_err)?;
                // Labels step down so that close moments do not overprint; past the middle
                // they end at their line instead of starting there.
                let y = top * (0.97 - 0.06 * (i % 3) as f64);
                let h = if m.at_s > (x.start + x.end) / 2.0 {
                    HPos::Right
                } else {
                    HPos::Left
                };
                let font = ("sans-serif", 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(h, VPos::Top));
                chart
                    .draw_series([Text::new(format!(" {} ", m.label), (m.at_s, y), font)])
                    .map_err(draw_err)?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(draw_err)?;
            root.present().map_err(draw_err)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic() -> Timeline {
        let mut t = Timeline::new(vec!["isp1".into(), "isp2".into()]);
        t.round(0.0, 2.0, vec![100, 100], 0);
        // The black hole at 3 s: failures, then isp2 only; isp1 back at 8 s.
        t.mark(3.0, "black hole isp1");
        t.round(3.0, 4.0, vec![0, 8], 8);
        t.round(4.0, 7.0, vec![0, 48], 0);
        t.mark(7.0, "restore isp1");
        t.round(7.0, 8.5, vec![0, 24], 0);
        t.mark(8.5, "failback isp1");
        t.round(8.5, 9.0, vec![4, 0], 0);
        t
    }

    #[test]
    fn rounds_spread_over_the_seconds_they_span() {
        let rows = synthetic().per_second();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0], [50.0, 50.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 4.0]);
        assert_eq!(rows[1], [50.0, 50.0, 0.0, 8.0, 16.0, 16.0, 16.0, 16.0, 8.0]);
        assert_eq!(rows[2], [0.0, 0.0, 0.0, 8.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let total: f64 = rows.iter().flatten().sum();
        assert!((total - 292.0).abs() < 1e-9, "{total}");
        // A round of no duration lands in its second.
        let mut t = Timeline::new(vec!["a".into()]);
        t.round(1.5, 1.5, vec![3], 1);
        assert_eq!(t.per_second(), [vec![0.0, 3.0], vec![0.0, 1.0]]);
    }

    #[test]
    fn the_svg_has_both_series_and_the_marks() {
        let svg = synthetic().svg("altroute demo", (900, 420)).expect("svg");
        assert!(svg.starts_with("<svg"), "{svg:.100}");
        assert!(svg.trim_end().ends_with("</svg>"));
        // The texts drawn: the content of each `<text …>…</text>`.
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
            .collect();
        for want in [
            "isp1",
            "isp2",
            "failed",
            "black hole isp1",
            "restore isp1",
            "failback isp1",
            "new connections per second",
        ] {
            assert!(texts.contains(&want), "no {want} in {texts:?}");
        }
        // One polyline per series (3) and per mark (3), one per legend entry (3).
        let polylines = svg.matches("<polyline").count();
        assert!(polylines >= 9, "{polylines} polylines");
        // The series' colours: gateways blue and green, the failures red.
        for colour in ["#1F77B4", "#2CA02C", "#D62728"] {
            assert!(svg.contains(colour), "no {colour}");
        }
    }
}
