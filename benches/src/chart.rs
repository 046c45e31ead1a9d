//! Line charts written as plain SVG text, for the bandwidth harness's figures.
//!
//! Only what the harness needs: a logarithmic x axis, a logarithmic or linear y axis, one
//! polyline per series with a legend. No dependency beyond `std`.

use std::fmt::Write as _;

/// One line of a chart: a name for the legend and its points `(x, y)`. Points with a
/// non-positive coordinate on a logarithmic axis are left out.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// The points in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// How the y axis is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YScale {
    /// Powers of ten are evenly spaced.
    Log,
    /// Zero at the bottom, evenly spaced integers.
    Linear,
}

const W: f64 = 760.0;
const H: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 200.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A chart with a log-scaled x axis; returns the SVG document. An empty chart (no drawable
/// point) still yields a valid document with its title and axes.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    y_scale: YScale,
    series: &[Series],
) -> String {
    let keep = |(x, y): &(f64, f64)| {
        *x > 0.0 && x.is_finite() && y.is_finite() && (y_scale == YScale::Linear || *y > 0.0)
    };
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied().filter(keep))
        .collect();
    let (mut x0, mut x1) = (f64::MAX, f64::MIN);
    let (mut y0, mut y1) = (f64::MAX, f64::MIN);
    for (x, y) in &pts {
        x0 = x0.min(x.log10());
        x1 = x1.max(x.log10());
        let yv = if y_scale == YScale::Log {
            y.log10()
        } else {
            *y
        };
        y0 = y0.min(yv);
        y1 = y1.max(yv);
    }
    if pts.is_empty() {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    x0 = x0.floor();
    x1 = x1.ceil().max(x0 + 1.0);
    if y_scale == YScale::Log {
        y0 = y0.floor();
        y1 = y1.ceil().max(y0 + 1.0);
    } else {
        y0 = 0.0;
        y1 = (y1 + 1.0).ceil().max(1.0);
    }
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x.log10() - x0) / (x1 - x0) * pw;
    let sy = |y: f64| {
        let v = if y_scale == YScale::Log { y.log10() } else { y };
        TOP + ph - (v - y0) / (y1 - y0) * ph
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        escape(title)
    );
    // Grid and ticks.
    let mut e = x0;
    while e <= x1 + 1e-9 {
        let x = LEFT + (e - x0) / (x1 - x0) * pw;
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">1e{e}</text>"##,
            TOP + ph,
            TOP + ph + 18.0
        );
        e += 1.0;
    }
    let steps = if y_scale == YScale::Log {
        (y1 - y0).round()
    } else {
        (y1 - y0).min(10.0)
    };
    let mut i = 0.0;
    while i <= steps + 1e-9 {
        let v = y0 + (y1 - y0) * i / steps;
        let y = TOP + ph - (v - y0) / (y1 - y0) * ph;
        let label = if y_scale == YScale::Log {
            format!("1e{v:.0}")
        } else {
            format!("{v:.1}")
        };
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0
        );
        i += 1.0;
    }
    let _ = writeln!(
        out,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        H - 16.0,
        escape(x_label)
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + ph / 2.0,
        escape(y_label)
    );
    for (k, s) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let dash = if k >= COLOURS.len() {
            r#" stroke-dasharray="5,3""#
        } else {
            ""
        };
        let path: Vec<String> = s
            .points
            .iter()
            .filter(|p| keep(p))
            .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
            .collect();
        if !path.is_empty() {
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
                path.join(" ")
            );
            for p in &path {
                let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(out, r#"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>"#);
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let ly = TOP + 10.0 + k as f64 * 20.0;
        let lx = LEFT + pw + 14.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 22.0,
            lx + 28.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series_and_skips_points_a_log_axis_cannot_show() {
        let svg = line_chart(
            "t <1>",
            "d",
            "bytes",
            YScale::Log,
            &[
                Series {
                    name: "a".into(),
                    points: vec![(1.0, 10.0), (10.0, 1000.0), (0.0, 5.0)],
                },
                Series {
                    name: "b&c".into(),
                    points: vec![(100.0, 0.0)],
                },
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(
            svg.matches("<polyline").count(),
            1,
            "b has no drawable point"
        );
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("t &lt;1&gt;") && svg.contains("b&amp;c"));
    }

    #[test]
    fn an_empty_chart_is_still_a_document() {
        let svg = line_chart("e", "x", "y", YScale::Linear, &[]);
        assert!(svg.contains("</svg>") && !svg.contains("NaN"));
    }
}
