"""The report for people: a rich table on stderr, and Markdown (`--report FILE.md`), both made from the
report dict (`wsel.report`). User-supplied names are always Text, never markup, and shown with their control
characters escaped (`console.printable`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wsel.console import printable
from wsel.layers import compact_ranges, find_layer
from wsel.select import Selection

if TYPE_CHECKING:
    from rich.console import Console

COLUMNS = ("student tensor", "teacher tensor", "shape (teacher → student)", "selection per dim", "action")


def _rows(report: dict[str, Any]) -> list[list[str]]:
    """Table rows; tensors that differ only by layer index are folded into one `{0-5}` row."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for t in report["tensors"]:
        selection = ", ".join(d["text"] for d in t.get("dims", []))
        key = (
            _template(t["name"]),
            _template(t.get("teacher", "")),
            tuple(t["shape"]),
            tuple(t.get("teacher_shape", ())),
            selection,
            t["action"],
        )
        row = groups.setdefault(key, {"student": [], "teacher": [], "t": t, "selection": selection})
        row["student"].append(_layer_index(t["name"]))
        row["teacher"].append(_layer_index(t.get("teacher", "")))
    rows = []
    for (student_tpl, teacher_tpl, *_), row in groups.items():
        t = row["t"]
        student_name = _fill(student_tpl, row["student"])
        if t["action"] == "exclude":
            rows.append([student_name, "", _shape(t["shape"]), t.get("reason", ""), t["action"]])
            continue
        teacher_name = _fill(teacher_tpl, row["teacher"])
        rows.append(
            [
                student_name,
                "same" if teacher_name == student_name else teacher_name,
                f"{_shape(t['teacher_shape'])} → {_shape(t['shape'])}",
                row["selection"],
                t["action"] + (f" ×{t['scale']:.4g}" if t.get("scale") else ""),
            ]
        )
    return rows


def _template(name: str) -> str:
    ref = find_layer(name)
    return name if ref is None else f"{ref.prefix}{{}}{ref.suffix}"


def _layer_index(name: str) -> int | None:
    ref = find_layer(name)
    return None if ref is None else ref.index


def _fill(template: str, indices: list[int | None]) -> str:
    if "{}" not in template:
        return template
    values = [i for i in indices if i is not None]
    text = compact_ranges(values)
    return template.replace("{}", text if len(set(values)) == 1 else f"{{{text}}}")


def _shape(shape: list[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def render(console: Console, report: dict[str, Any]) -> None:
    """The human report on stderr. User-supplied names are Text, never markup."""
    title = f"wsel {report['command']}: {report['teacher']['path']} → {report['student']['config']}"
    _print_table(console, title, COLUMNS, _rows(report))
    if "remote" in report["teacher"]:
        _print(console, remote_line(report["teacher"]["remote"]))
    if "format" in report["teacher"]:
        _print(console, format_line(report["teacher"]))
    _print(console, _path_line(report))
    for m in report["layer_maps"]:
        _print(console, f"layers {m['group']}: {m['picture']}  {m['summary']}")
    for m in report.get("expert_maps", []):
        picture = f"{m['picture']}  " if m["teacher_experts"] <= 64 else ""  # one mark per expert, while it fits
        _print(console, f"experts of layers {m['layers']}: {picture}{m['summary']}")
    for check in report.get("checks", []):
        _print(console, f"checked: {check}")
    for warning in report["warnings"]:
        _print(console, f"warning: {warning}", "yellow")
    if "search" in report:
        _print_table(console, search_title(report["search"]), SEARCH_COLUMNS, search_rows(report["search"]))
        if report["search"]["note"]:
            _print(console, f"note: {report['search']['note']}", "yellow")
    _print(console, summary_line(report))


SEARCH_COLUMNS = ("#", "layers", "hidden", "heads", "kv heads", "head_dim", "intermediate", "parameters", "share")


def search_title(search: dict[str, Any]) -> str:
    budget, teacher = human_count(search["budget"]), human_count(search["teacher_parameters"])
    return f"--target-params {budget} of the teacher's {teacher}: candidates (the plan above is #1)"


def search_rows(search: dict[str, Any]) -> list[list[str]]:
    return [
        [str(i), *(str(c.get(axis, "")) for axis in ("layers", "hidden", "heads", "kv_heads", "head_dim", "mlp")),
         f"{c['parameters']:,}", f"{c['share']:.1%}"]
        for i, c in enumerate(search["candidates"], start=1)
    ]  # fmt: skip


# A terminal table stops here (rich lays out every row before printing: 100,000 rows take minutes); the
# note under it says how to get every row. `--json` and `--report FILE.md` always hold them all.
MAX_TABLE_ROWS = 1000


def _print_table(console: Console, title: str, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(printable(title)))
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows[:MAX_TABLE_ROWS]:
        table.add_row(*(Text(printable(cell)) for cell in row))
    console.print(table)
    if len(rows) > MAX_TABLE_ROWS:
        _print(console, f"... {len(rows) - MAX_TABLE_ROWS} more rows: --json or --report FILE.md lists every one")


def _print(console: Console, line: str, style: str = "") -> None:
    """One line for people: control characters escaped, never markup."""
    from rich.text import Text

    console.print(Text(printable(line), style=style), soft_wrap=True)  # the terminal wraps: paths stay whole


def remote_line(remote: dict[str, Any]) -> str:
    """Where a remote teacher was read: `hf://org/name at commit 0123456789ab (main), from https://...`."""
    if "repo" in remote:
        folder = f"/{remote['subfolder']}" if remote["subfolder"] else ""
        return (
            f"teacher read from hf://{remote['repo']}{folder} at commit {remote['commit'][:12]} "
            f"({remote['revision']}), from {remote['endpoint']}"
        )
    return f"teacher read from {remote['url']}"


def _path_line(report: dict[str, Any]) -> str:
    if report["path"] == "generic":
        return "generic path: dims matched by name and size, the paper's rule on every dim"
    return f"architecture {report['path']}: {report['options']['attention']} attention"


def summary_line(report: dict[str, Any]) -> str:
    totals = report["totals"]
    line = (
        f"{totals['tensors_written']} tensors, {human_count(totals['parameters'])} parameters, "
        f"{human_bytes(totals['bytes'])} ({100 * totals['teacher_share']:.1f}% of the teacher's "
        f"{human_bytes(totals['teacher_bytes'])})"
    )
    if report["excluded"]:
        line += f"; {len(report['excluded'])} excluded"
    run = report.get("run")
    if run:
        line += f"; read {human_bytes(run['bytes_read'])} in {run['seconds']:.2f} s → {', '.join(run['files'])}"
        if run.get("requests"):
            retried = f", {run['retries']} retried" if run["retries"] else ""
            line += f" (fetched {human_bytes(run['bytes_fetched'])} in {run['requests']} requests{retried})"
    else:
        line += "; nothing written (inspect)"
    return line


def render_teacher(console: Console, report: dict[str, Any], unfold: bool = False) -> None:
    """`wsel inspect --teacher T`: the family line, then the tensors (repeated layers folded unless `unfold`)."""
    teacher = report["teacher"]
    _print(console, family_line(report["family"]))
    _print_table(console, f"{teacher['path']}: {len(teacher['files'])} file(s)", TEACHER_COLUMNS,
                 teacher_rows(report["tensors"], unfold))  # fmt: skip
    if "remote" in teacher:
        _print(console, remote_line(teacher["remote"]))
    if "format" in teacher:
        _print(console, format_line(teacher))
    for g in teacher["layer_groups"]:
        _print(console, f"layers {g['group']}: {g['layers']}")
    for line in provenance_lines(report["provenance"]) if report.get("provenance") else []:
        _print(console, line)
    for warning in report.get("warnings", []):
        _print(console, f"warning: {warning}", "yellow")
    _print(
        console,
        f"{teacher['tensors']} tensors, {human_count(teacher['parameters'])} parameters, "
        f"{human_bytes(teacher['bytes'])}",
    )


TEACHER_COLUMNS = ("tensor", "shape", "dtype", "bytes", "file")


def teacher_rows(tensors: list[dict[str, Any]], unfold: bool = False) -> list[list[str]]:
    """A checkpoint's tensors as table rows, in the report's order; tensors that differ only by layer index
    (same shape and dtype) folded into one `model.layers.{0-29}.mlp.up_proj.weight` row, unless `unfold`."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for t in tensors:
        key = (t["name"],) if unfold else (_template(t["name"]), tuple(t["shape"]), t["dtype"])
        groups.setdefault(key, []).append(t)
    rows = []
    for members in groups.values():
        first = members[0]
        name = (
            _fill(_template(first["name"]), [_layer_index(t["name"]) for t in members])
            if len(members) > 1
            else first["name"]
        )
        size = human_bytes(first["bytes"]) if len(members) == 1 else f"{len(members)} × {human_bytes(first['bytes'])}"
        files = sorted({t["file"] for t in members})
        rows.append(
            [
                name,
                _shape(first["shape"]),
                first["dtype"],
                size,
                ", ".join(files) if len(files) <= 2 else f"{len(files)} files",
            ]
        )
    return rows


def family_line(family: dict[str, Any]) -> str:
    """What wsel knows of the teacher's family, and so which path a student takes."""
    model_type, arch, name_set = family["model_type"], family["architecture"], family["name_set"]
    if model_type is not None and arch is not None:
        return f"model_type {model_type}: architecture data {arch} (whole heads, GQA groups, RoPE pairs kept)"
    if model_type is not None:
        return (
            f"model_type {model_type}: no architecture data; a config.json student takes the generic path "
            "(dims mapped by config values)"
        )
    if name_set is not None:
        return f"no config.json; the tensor names match the {name_set} name set (fused blocks kept apart)"
    return "no config.json: a shape manifest or template student takes the generic path (dims by size)"


def markdown(report: dict[str, Any]) -> str:
    """The same table as Markdown, for `--report FILE.md`."""
    lines = [
        f"# wsel {report['command']}: `{report['teacher']['path']}` → `{report['student']['config']}`",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(f"`{c}`" if c else "" for c in row) + " |" for row in _rows(report)]
    lines += ["", f"- {_path_line(report)}"]
    lines += [f"- {format_line(report['teacher'])}"] if "format" in report["teacher"] else []
    lines += [f"- layers `{m['group']}`: {m['summary']}" for m in report["layer_maps"]]
    lines += [f"- experts of layers {m['layers']}: {m['summary']}" for m in report.get("expert_maps", [])]
    lines += [f"- checked: {c}" for c in report.get("checks", [])]
    lines += [f"- warning: {w}" for w in report["warnings"]]
    if "search" in report:
        lines += ["", f"## {search_title(report['search'])}", "", "| " + " | ".join(SEARCH_COLUMNS) + " |",
                  "|" + "---|" * len(SEARCH_COLUMNS)]  # fmt: skip
        lines += ["| " + " | ".join(row) + " |" for row in search_rows(report["search"])]
        lines += [f"- note: {report['search']['note']}"] if report["search"]["note"] else []
    lines += ["", summary_line(report), ""]
    return "\n".join(printable(line) for line in lines)  # a name holding a newline stays on its row


def provenance_lines(record: dict[str, Any]) -> list[str]:
    """How a wsel checkpoint was made, in a few lines."""
    options = record.get("options", {})
    lines = [
        f"made by wsel {record.get('wsel_version')} from "
        + ", ".join(f"{f['file']} (header sha256 {f['header_sha256'][:12]})" for f in record["teacher"]),
        "options: " + ", ".join(f"{k}={v}" for k, v in options.items()),
    ]
    lines += [
        f"layers {group}: teacher layers {compact_ranges(kept)}" for group, kept in record.get("layer_maps", {}).items()
    ]
    axes = record["axes"]
    lines.append(
        f"{len(axes)} axes: "
        + ", ".join(f"{name} {Selection.from_dict(sel).describe()}" for name, sel in list(axes.items())[:8])
        + (", ..." if len(axes) > 8 else "")
    )
    return lines


def format_line(teacher: dict[str, Any]) -> str:
    """How a teacher that is not safetensors was read."""
    if teacher["format"] == "pytorch":
        nested = f", state dict {teacher['key']!r}" if "key" in teacher else ""
        return f"format: PyTorch checkpoint{nested}, read without running its pickle"
    blocks = teacher.get("quantized", {})
    decoded = (
        f"; tensors in GGML blocks ({', '.join(f'{q} {n}' for q, n in blocks.items())}) are dequantized to float32"
        if blocks
        else ""
    )
    return f"format: GGUF{decoded}"


def markdown_teacher(report: dict[str, Any], unfold: bool = False) -> str:
    """`wsel inspect --teacher T --report FILE.md`: the teacher's tensors as Markdown."""
    teacher = report["teacher"]
    lines = [
        f"# {teacher['path']}: {len(teacher['files'])} file(s)",
        "",
        family_line(report["family"]),
        *([format_line(teacher)] if "format" in teacher else []),
        "",
        "| " + " | ".join(TEACHER_COLUMNS) + " |",
        "|" + "---|" * len(TEACHER_COLUMNS),
    ]
    lines += [
        "| " + " | ".join(f"`{c}`" if i < 2 else c for i, c in enumerate(row)) + " |"
        for row in teacher_rows(report["tensors"], unfold)
    ]
    if report.get("warnings"):
        lines += ["", *(f"- warning: {w}" for w in report["warnings"])]
    lines += ["", f"{teacher['tensors']} tensors, {teacher['parameters']} parameters, {teacher['bytes']} bytes", ""]
    return "\n".join(printable(line) for line in lines)  # a name holding a newline stays on its row
