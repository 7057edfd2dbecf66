"""The table both binaries print at the end of a phase (and again when rerun after it finished).

    report.print_summary(summary)     # summary: the dict written to <phase>/summary.json
"""

_TITLES = {
    "search": "FiGS search: exported architecture",
    "retrain": "FiGS retraining of the exported architecture",
}
_UNITS = {"params": "parameters", "flops": "multiply-adds"}


def print_summary(summary):
    """Widths per layer, cost against the supernet, then the phase's own results."""
    print(f"\n{_TITLES[summary['phase']]} (layer: supernet width -> exported width)")
    for name, full in summary["supernet_widths"].items():
        print(f"  {name:24s} {full:>6} -> {summary['architecture'].get(name, full)}")
    for metric, exported in summary["exported"].items():
        supernet = summary["supernet"][metric]
        print(f"  {_UNITS[metric]:14s} supernet {supernet:,}  exported {exported:,} ({exported / supernet:.1%})")
    if summary.get("operators"):
        _print_operators(summary["operators"])
    if summary["phase"] == "search":
        _print_search_results(summary)
    else:
        start = {"scratch": "from scratch", "inherited": "from the search's weights"}[summary.get("init", "scratch")]
        teacher = f", distilled from the {summary['teacher']} model" if summary.get("teacher") else ""
        print(f"  retrained {start}{teacher} for {summary['steps']} steps: test accuracy "
              f"{summary['test_accuracy']:.4f}")


def _print_operators(choices):
    """Per layer, the operators kept and removed; how many layers kept one operator or none."""
    print("  operators kept per layer (removed in brackets):")
    for layer, kept in choices.items():
        removed = [op for op, on in kept.items() if not on]
        print(f"  {layer:24s} {' '.join(op for op, on in kept.items() if on) or '-'}"
              + (f"  [{' '.join(removed)}]" if removed else ""))
    every = sum(all(kept.values()) for kept in choices.values())
    single = [f"{layer} ({op})" for layer, kept in choices.items() for op, on in kept.items()
              if on and sum(kept.values()) == 1 and len(kept) > 1]
    print(f"  {len(choices)} layers: {every} kept every operator, {len(choices) - every} removed some; "
          f"{len(single)} kept a single one{': ' + ', '.join(single) if single else ''}")


def _print_search_results(summary):
    print(f"  λ at the end {summary['strength']:.3g}; {summary['steps']} steps")
    print(f"  search model accuracy (inference mode, inherited weights): {summary['search_model_accuracy']:.4f}")
    for budget, path in summary.get("pareto", {}).items():
        print(f"  Pareto budget {float(budget):,.0f}: {path} (retrain it with --config.retrain.architecture={path})")
    if summary.get("pareto_missing"):
        print(f"  Pareto budgets never reached: {summary['pareto_missing']} (more AL steps)")
    if "exported_inherited_accuracy" in summary:
        print(f"  exported network, inherited weights, BatchNorm recomputed: "
              f"{summary['exported_inherited_accuracy']:.4f} (retrain with figs-retrain)")
