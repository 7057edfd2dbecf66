"""`figs_tf.summary(search)`: the architecture the gates select now, as a table.

Like `model.summary()`, for a search model (figs_tf.wrap): one row per searched
layer (channels kept / channels of the supernet, the layer's cost in the
exported network and its share of it), then the totals against the supernet
and the budget, the layers kept out of search, and which operators (removable
summands) survive.

    figs_tf.summary(search)
    figs_tf.summary(search, operators=figs_tf.spaces.operator_choices_function("fbnet"))
    lines = []
    figs_tf.summary(search, print_fn=lines.append)
"""

import textwrap

from figs_tf import cost as cost_lib
from figs_tf import export as export_lib
from figs_tf import wrapping as wrap_lib
from figs_tf.channel_groups import name_list
from figs_tf.channel_sets import groups_in, num_channels

METRIC_UNITS = {"params": "params", "flops": "mult-adds"}
_LINE_LENGTH = 88  # lines longer than this and than the table are wrapped


def summary(search, operators=None, metric=None, print_fn=None):
    """Prints what the search model's gates select now: per layer, then the totals.

    Args:
      search: a search model (figs_tf.wrap).
      operators: optional function {layer: width} -> {block: {operator: kept}}
        (`figs_tf.spaces.operator_choices_function(space)`): the operators each
        block keeps are listed. Without it the removable summands
        (figs_tf.branches) that were removed are named.
      metric: "params" or "flops"; default: the cost the model was wrapped with.
      print_fn: called with each line (default `print`), as in `model.summary`.

    Example:

    >>> figs_tf.summary(search)      # examples/cnn_summary.py
    Search model 'small_cnn_figs': params cost, λ 8.4e-08, gate speed 16
    ------------------------------------------
    Layer         Kept / total  params   Share
    ------------------------------------------
    conv0              20 / 32     180   0.5 %
    conv1              37 / 64   6,660  16.8 %
    conv2             76 / 128  25,308  64.0 %
    other layers                 7,382  18.7 %
    ------------------------------------------
    Exported: 39,530 params, 37.7 % of the supernet's 104,874
    Expected (Σπ, what λ presses on): 40,897 params
    Target: 40,000 params; exported is -1.2 %
    Not searched (1, graph.notes says why): classifier
    """
    print_fn = print if print_fn is None else print_fn
    for line in summary_lines(search, operators=operators, metric=metric):
        print_fn(line)


def summary_lines(search, operators=None, metric=None):
    """The lines `summary` prints (a list of str)."""
    layer = wrap_lib.cost_layer_of(search)
    metric = cost_lib.check_metric(metric or layer.metric)
    unit = METRIC_UNITS[metric]
    graph = wrap_lib.channel_graph_of(search)
    network = export_lib.exported_network(search)
    architecture = network.architecture()
    live = {id(call) for call in network.live_calls}
    costs = cost_lib.layer_costs(graph, metric, network.widths, network.live_calls)
    exported = network.cost(metric)

    rows, unsearched, shown_calls = [], [], set()
    for name, call, channel_set in graph.width_entries():
        if not groups_in(channel_set):
            unsearched.append(name)
            continue
        kept = architecture[name]
        cost = ""
        if id(call) not in shown_calls:  # a layer's cost goes on its first row (its heads' row follows)
            shown_calls.add(id(call))
            cost = costs.get(call.name, 0) if id(call) in live else 0
        rows.append([name if kept or id(call) in live else f"{name} (removed)",
                     f"{kept} / {num_channels(channel_set)}", cost])
    other = exported - sum(r[2] for r in rows if r[2] != "")
    rows.append(["other layers", "", other])
    table = [["Layer", "Kept / total", unit, "Share"]]
    for name, widths, cost in rows:
        share = "" if cost == "" else f"{100.0 * cost / exported:.1f} %" if exported else "-"
        table.append([name, widths, "" if cost == "" else f"{cost:,}", share])

    supernet = export_lib.supernet_cost(search, metric)
    lines = [f"Search model '{search.name}': {layer.metric} cost, λ {wrap_lib.get_strength(search):.3g}, "
             f"gate speed {wrap_lib.get_gate_speed(search):g}"]
    lines += _format_table(table, align_right=(False, True, True, True))
    lines.append(f"Exported: {exported:,} {unit}, {_percent(exported, supernet)} of the supernet's {supernet:,}")
    lines.append(f"Expected (Σπ, what λ presses on): {export_lib.expected_cost(search, metric):,.0f} {unit}")
    target = wrap_lib.get_target(search)
    if target is not None and metric == layer.metric:
        lines.append(f"Target: {target:,.0f} {unit}; exported is {100.0 * (exported - target) / target:+.1f} %")
    elif metric == layer.metric:
        lines.append("Target: none (a fixed λ)")
    if unsearched:
        lines.append(f"Not searched ({len(unsearched)}, graph.notes says why): {name_list(unsearched)}")
    lines += _operator_lines(graph, live, architecture, operators)
    width = max(_LINE_LENGTH, len(lines[1]))  # the table's rule
    return [wrapped for line in lines
            for wrapped in textwrap.wrap(line, width, subsequent_indent="    ", break_on_hyphens=False)]


def _operator_lines(graph, live, architecture, operators):
    if operators is not None:
        lines = ["Operators kept:"]
        for block, choices in operators(architecture).items():
            kept = [op for op, alive in choices.items() if alive]
            removed = [op for op, alive in choices.items() if not alive]
            lines.append(f"  {block}: {', '.join(kept) or 'none'}"
                         + (f" (removed: {', '.join(removed)})" if removed else ""))
        return lines
    if not graph.branches:
        return []
    removed = [b.name for b in graph.branches if not any(id(c) in live for c in b.calls)]
    return [f"Removable summands (operators, blocks): {len(removed)} of {len(graph.branches)} removed"
            + (f": {name_list(removed)}" if removed else "")]


def _format_table(table, align_right):
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    lines = []
    for row in table:
        cells = [str(c).rjust(w) if right else str(c).ljust(w) for c, w, right in zip(row, widths, align_right)]
        lines.append("  ".join(cells).rstrip())
    rule = "-" * len(lines[0])
    return [rule, lines[0], rule] + lines[1:] + [rule]


def _percent(part, whole):
    return f"{100.0 * part / whole:.1f} %" if whole else "-"


__all__ = ["summary", "summary_lines"]
