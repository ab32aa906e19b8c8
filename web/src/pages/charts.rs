//! SVG charts drawn with plotters, in the site's dark theme: an agent's rating over
//! its matches (μ with its μ ± 2σ band, the match number on the x-axis) and a training
//! run's loss curve. Labels are numbers and fixed words only, so the SVG holds no user
//! text and can be inlined in a page as it is.

use plotters::prelude::*;

const SIZE: (u32, u32) = (640, 240);

/// The theme's panel, grid, text and muted colours (`assets/web/static/style.css`).
const PANEL: RGBColor = RGBColor(23, 26, 33);
const GRID: RGBColor = RGBColor(39, 43, 53);
const TEXT: RGBColor = RGBColor(230, 232, 238);
const MUTED: RGBColor = RGBColor(138, 145, 163);

/// Draws series of (x, y) points as lines; `None` when there is nothing to draw.
fn lines(series: &[(&[(f64, f64)], RGBColor)], x_desc: &str, y_desc: &str) -> Option<String> {
    let all: Vec<&(f64, f64)> = series.iter().flat_map(|(s, _)| s.iter()).collect();
    if all.is_empty() {
        return None;
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in all {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.1).max(1e-3);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&PANEL).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .ok()?;
        chart
            .configure_mesh()
            // Both charts count something whole (matches, steps): whole-number ticks.
            .x_labels(((x1 - x0) as usize + 1).min(10))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .axis_style(MUTED)
            .bold_line_style(GRID)
            .light_line_style(PANEL)
            .label_style(("sans-serif", 13).into_font().color(&TEXT))
            .axis_desc_style(("sans-serif", 13).into_font().color(&MUTED))
            .draw()
            .ok()?;
        for (points, color) in series {
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .ok()?;
        }
        root.present().ok()?;
    }
    Some(svg)
}

/// μ with its μ ± 2σ band against the match number: `points` are (match number, μ, σ),
/// the first being the rating before any match (match 0).
pub(crate) fn rating_svg(points: &[(f64, f64, f64)]) -> Option<String> {
    let mu: Vec<(f64, f64)> = points.iter().map(|(x, m, _)| (*x, *m)).collect();
    let hi: Vec<(f64, f64)> = points.iter().map(|(x, m, s)| (*x, m + 2.0 * s)).collect();
    let lo: Vec<(f64, f64)> = points.iter().map(|(x, m, s)| (*x, m - 2.0 * s)).collect();
    let band = RGBColor(70, 90, 140);
    lines(
        &[(&hi, band), (&lo, band), (&mu, RGBColor(122, 162, 255))],
        "match",
        "rating (mu)",
    )
}

/// DPO loss per step.
pub(crate) fn loss_svg(steps: &[(f64, f64)]) -> Option<String> {
    lines(&[(steps, RGBColor(239, 107, 107))], "step", "loss")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg() {
        let svg = rating_svg(&[(0.0, 25.0, 8.0), (1.0, 27.0, 7.5), (2.0, 26.0, 7.0)]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
        let flat: String = svg.split_whitespace().collect();
        assert!(
            flat.contains(">match</text>"),
            "the x-axis is the match number: {svg}"
        );
        assert!(
            !flat.contains(">0.5</text>"),
            "whole match numbers only: {svg}"
        );
        assert!(!svg.contains("#FFFFFF"), "no white box on the dark theme");
        assert!(loss_svg(&[]).is_none());
        assert!(
            loss_svg(&[(0.0, 0.69), (1.0, 0.6)])
                .unwrap()
                .contains("<svg")
        );
    }
}
