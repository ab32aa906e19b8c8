//! SVG charts drawn with plotters: an agent's rating over its matches (μ with its
//! μ ± 2σ band) and a training run's loss curve. Labels are numbers only, so the SVG
//! holds no user text and can be inlined in a page as it is.

use plotters::prelude::*;

const SIZE: (u32, u32) = (640, 240);

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
        root.fill(&WHITE).ok()?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad))
            .ok()?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .light_line_style(WHITE)
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

/// μ over successive rating changes with the μ ± 2σ band.
pub(crate) fn rating_svg(points: &[(f64, f64)]) -> Option<String> {
    let mu: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .map(|(i, (m, _))| (i as f64, *m))
        .collect();
    let hi: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .map(|(i, (m, s))| (i as f64, m + 2.0 * s))
        .collect();
    let lo: Vec<(f64, f64)> = points
        .iter()
        .enumerate()
        .map(|(i, (m, s))| (i as f64, m - 2.0 * s))
        .collect();
    let band = RGBColor(170, 190, 230);
    lines(
        &[(&hi, band), (&lo, band), (&mu, RGBColor(40, 80, 200))],
        "rating change",
        "mu",
    )
}

/// DPO loss per step.
pub(crate) fn loss_svg(steps: &[(f64, f64)]) -> Option<String> {
    lines(&[(steps, RGBColor(200, 60, 60))], "step", "loss")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg() {
        let svg = rating_svg(&[(25.0, 8.0), (27.0, 7.5), (26.0, 7.0)]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
        assert!(loss_svg(&[]).is_none());
        assert!(
            loss_svg(&[(0.0, 0.69), (1.0, 0.6)])
                .unwrap()
                .contains("<svg")
        );
    }
}
