"""Reports: Markdown tables and pages, matplotlib figures, each file written atomically.

    table = markdown_table(["lr", "accuracy"], [[1e-3, "0.95 ± 0.01"]])
    plot_lr_sensitivity("out/sens.png", {"adam": [Curve("n=25", lrs_P, acc_P)]})
    write_report("out", "My study", [("Results", table + "\n\n" + image("sens.png", "curves"))])
    write_sweep_report(result, "out")  # the main script's report.md and figures of a sweep

matplotlib is imported only inside the functions that draw (start-up time matters for the
scripts and their bad-input path), always with the non-interactive Agg backend.

The modules, each one idea (none imports this package face, so they form no cycle):

    markdown       format_lr, format_ci, markdown_table, image, write_report
    panels         Curve, Marker, plot_panels, save_figure, figure_title, sequential_colors;
                   `_pyplot`, the one place the Agg backend is chosen, before pyplot is
                   imported; every figure lays itself out (`layout="constrained"`)
    figures        plot_lr_sensitivity, plot_curves, plot_best_lr
    png            is_png
    points         a sweep's grid points: group_title, rule_points, a point's runs and name
    sweep_figures  the sweep report's panels: metric against learning rate, per-epoch curves
    selection      sweep_table and the selection per group
    estimate       estimate_markdown, result_estimates
    sweep          write_sweep_report: report.md and its figures

This face re-exports every public name the module had.
"""
from lr_jax.report.estimate import estimate_markdown, result_estimates
from lr_jax.report.figures import plot_best_lr, plot_curves, plot_lr_sensitivity
from lr_jax.report.markdown import format_ci, format_lr, image, markdown_table, write_report
from lr_jax.report.panels import (MARKER_STYLES, Curve, Marker, plot_panels, save_figure,
                                  sequential_colors)
from lr_jax.report.png import PNG_MAGIC, is_png
from lr_jax.report.points import group_title, rule_points
from lr_jax.report.selection import sweep_table
from lr_jax.report.sweep import write_sweep_report
# Private, for tests/report_test.py: the sweep report's panels before they are drawn.
from lr_jax.report.sweep_figures import _curve_panels, _sensitivity_panels

__all__ = [
    "Curve", "MARKER_STYLES", "Marker", "PNG_MAGIC", "estimate_markdown", "format_ci",
    "format_lr", "group_title", "image", "is_png", "markdown_table", "plot_best_lr", "plot_curves",
    "plot_lr_sensitivity", "plot_panels", "result_estimates", "rule_points", "save_figure",
    "sequential_colors", "sweep_table", "write_report", "write_sweep_report",
]
