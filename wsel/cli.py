"""The `wsel` command line: parse, call the library, print. Only this module exits."""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import wsel
from wsel import __version__
from wsel.checkpoint.dtypes import CAST_TARGETS
from wsel.checkpoint.output import DEFAULT_MAX_SHARD_SIZE, parse_size
from wsel.console import byte_progress, make_console, printable
from wsel.errors import OutputError, WselError
from wsel.options import (
    ATTENTION,
    ELEMENT_STRATEGIES,
    Attention,
    ElementStrategyName,
    PlanOptions,
    parse_layer_strategy,
)
from wsel.sources import DEFAULT_CONNECTIONS

if TYPE_CHECKING:
    from wsel.checkpoint.index import CheckpointIndex
    from wsel.plan.model import Plan
    from wsel.plan.search import StudentSearch


TEACHER_HELP = (
    "Teacher checkpoint: a .safetensors file, a PyTorch checkpoint (.bin/.pt/.pth, read without running its "
    "pickle), a GGUF file, a Hugging Face folder or an index file; a Hub repo hf://ORG/NAME[@REVISION][/FOLDER] "
    "(or ORG/NAME when no such local path exists); or an http(s):// URL of a checkpoint or index file. Remote "
    "teachers are read by range requests: only the bytes needed."
)
STUDENT_HELP = (
    "Student config: a Hugging Face config.json, a shape manifest .json, a template .safetensors (header only), "
    "or - for stdin."
)


class _SizeType(click.ParamType[int]):
    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


@dataclass(frozen=True)
class StudentArgs:
    """What `init` and `inspect` share: the student and how to select it."""

    config: str | None
    sets: tuple[str, ...]
    teacher_config: Path | None
    options: PlanOptions
    target_params: str | None = None  # a budget: the student's free sizes are searched (`wsel.search_students`)
    multiple_of: int = 64


def _student_options(f: Any) -> Any:
    """Add the student options and hand the command one StudentArgs (`student`) in their place."""

    @functools.wraps(f)
    def command(
        *args: Any,
        student_config: str | None,
        sets: tuple[str, ...],
        teacher_config: Path | None,
        attention: Attention,
        layers: str,
        elements: ElementStrategyName,
        seed: int,
        rescale: bool,
        exclude: tuple[str, ...],
        target_params: str | None,
        multiple_of: int,
        **kwargs: Any,
    ) -> Any:
        options = PlanOptions(
            parse_layer_strategy(layers), elements, exclude=exclude, attention=attention, seed=seed, rescale=rescale
        )
        if target_params is not None and student_config is not None:
            raise click.UsageError("--target-params searches the teacher's config.json; leave out --student-config")
        student = StudentArgs(student_config, sets, teacher_config, options, target_params, multiple_of)
        return f(*args, student=student, **kwargs)

    options = [
        click.option("--student-config", "-s", help=STUDENT_HELP),
        click.option(
            "--set",
            "sets",
            multiple=True,
            metavar="KEY=VALUE",
            help="Override a key of the student's config.json (repeatable); without --student-config the student "
            "is the teacher's config with these overrides, e.g. --set num_hidden_layers=16.",
        ),
        click.option(
            "--target-params",
            metavar="BUDGET",
            help="Search the student's sizes for this many parameters (1.5B, 500M, 25%% of the teacher's): keeps "
            "head_dim, the GQA group and the MLP ratio; --set fixes sizes; init uses the first candidate.",
        ),
        click.option(
            "--multiple-of",
            type=click.IntRange(min=1),
            default=64,
            show_default=True,
            help="With --target-params: hidden and intermediate sizes are multiples of this.",
        ),
        click.option(
            "--teacher-config",
            type=click.Path(path_type=Path, dir_okay=False),
            help="The teacher's config.json, when it is not in the teacher folder.",
        ),
        click.option(
            "--exclude",
            multiple=True,
            metavar="GLOB",
            help="Student tensors left out of the output, for the student's own init (repeatable), e.g. 'head*'.",
        ),
        click.option(
            "--layers",
            default="first",
            show_default=True,
            metavar="first|uniform|last|LIST",
            help="Which teacher layers: the first N (paper), spread evenly, the last N, or a list such as 0,2,4,6 "
            "(';' between the lists of several layer groups).",
        ),
        click.option(
            "--elements",
            type=click.Choice(ELEMENT_STRATEGIES),
            default="uniform",
            show_default=True,
            help="Which indices of each axis: the paper's uniform rule, the first ones, random (seeded), "
            "or the largest by weight magnitude. Always the same set for every tensor of an axis.",
        ),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random element strategy."),
        click.option(
            "--attention",
            type=click.Choice(ATTENTION),
            default="structured",
            show_default=True,
            help="With architecture data: keep whole heads, GQA groups and RoPE pairs; 'flat' applies the paper's "
            "per-dim rule to attention too.",
        ),
        click.option(
            "--rescale",
            is_flag=True,
            help="Multiply weights whose input dim shrank from T to S by sqrt(T/S) (weight subcloning's rule).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@dataclass(frozen=True)
class TeacherArgs:
    location: str
    connections: int
    key: str | None

    def open(self) -> CheckpointIndex:
        return wsel.open_teacher(self.location, connections=self.connections, key=self.key)


def _teacher_options(f: Any) -> Any:
    """Add --teacher, --teacher-key and --connections and hand the command one TeacherArgs (`teacher`) in
    their place."""

    @functools.wraps(f)
    def command(*args: Any, teacher: str, connections: int, teacher_key: str | None, **kwargs: Any) -> Any:
        return f(*args, teacher=TeacherArgs(teacher, connections, teacher_key), **kwargs)

    command = click.option(
        "--teacher-key",
        metavar="NAME",
        help="The state dict to read from a PyTorch checkpoint that holds several (model, model_ema, ...).",
    )(command)
    command = click.option(
        "--connections",
        type=click.IntRange(min=1),
        default=DEFAULT_CONNECTIONS,
        show_default=True,
        help="Requests in flight when the teacher is remote.",
    )(command)
    return click.option("--teacher", "-t", required=True, help=TEACHER_HELP)(command)


def _output_options(f: Any) -> Any:
    f = click.option(
        "--report",
        "report_file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Also save the report: FILE.json, or FILE.md for a Markdown table.",
    )(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document on stdout.")(f)
    f = click.option("--quiet", "-q", is_flag=True, help="No progress or report on stderr (errors still print).")(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wsel")
def cli() -> None:
    """Weight selection: initialize a small model from a large pretrained one (Xu et al., ICLR 2024).

    Streams the selected sub-tensors from the teacher's safetensors files; the teacher is never
    loaded into memory.
    """


@cli.command()
@_teacher_options
@click.option(
    "--output",
    "-o",
    required=True,
    help="Output: NAME.safetensors for one file, or a folder (model.safetensors, or shards + index).",
)
@_student_options
@click.option("--dtype", type=click.Choice(sorted(CAST_TARGETS)), help="Cast floating tensors (default: keep bytes).")
@click.option(
    "--max-shard-size",
    type=_SizeType(),
    default=DEFAULT_MAX_SHARD_SIZE,
    show_default="5GB",
    help="Largest shard when writing a folder, e.g. 500MB or 2GiB.",
)
@click.option("--force", is_flag=True, help="Replace an existing output checkpoint.")
@_output_options
def init(
    teacher: TeacherArgs,
    output: str,
    student: StudentArgs,
    dtype: str | None,
    max_shard_size: int,
    force: bool,
    quiet: bool,
    as_json: bool,
    report_file: Path | None,
) -> None:
    """Write a student checkpoint selected from the teacher."""
    from wsel import render

    console = make_console(quiet)
    with _errors_exit():
        options = replace(student.options, dtype=CAST_TARGETS[dtype] if dtype else None)
        plan, search = _plan(teacher.open(), student, options)
        if report_file is not None:
            _check_writable(report_file)  # before the run: a failed report must not follow a written checkpoint
        planned = sum(length for _, _, length in wsel.read_schedule(plan))  # teacher bytes the run reads
        verb = "fetching" if plan.teacher.folder.describe() is not None else "reading"
        with byte_progress(console, planned, verb) as on_progress:
            # a trailing slash on `output` always means a folder
            stats = wsel.write_student(
                plan, output, force=force, max_shard_size=max_shard_size, on_progress=on_progress
            )
        doc = _with_search(wsel.plan_report(plan, stats, "init"), search)
        _emit(console, doc, as_json, report_file, render.render, render.markdown)


@cli.command()
@_teacher_options
@_student_options
@click.option("--all", "unfold", is_flag=True, help="List every tensor, repeated layers unfolded.")
@_output_options
def inspect(
    teacher: TeacherArgs, student: StudentArgs, unfold: bool, quiet: bool, as_json: bool, report_file: Path | None
) -> None:
    """Show a checkpoint's tensors (and how wsel made it), or, with a student, preview the mapping.
    Writes no checkpoint."""
    from wsel import render

    console = make_console(quiet)
    with _errors_exit():
        index = teacher.open()
        if student.config is None and not student.sets and student.target_params is None:
            doc = wsel.teacher_report(index)
            show = functools.partial(render.render_teacher, unfold=unfold)
            _emit(console, doc, as_json, report_file, show, functools.partial(render.markdown_teacher, unfold=unfold))
            return
        plan, search = _plan(index, student, student.options)
        doc = _with_search(wsel.plan_report(plan, None, "inspect"), search)
        _emit(console, doc, as_json, report_file, render.render, render.markdown)


@cli.command()
@_teacher_options
@click.option(
    "--student", "-s", required=True, type=click.Path(path_type=Path), help="The student checkpoint written by wsel."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="Nothing on stderr unless something does not match.")
def verify(teacher: TeacherArgs, student: Path, as_json: bool, quiet: bool) -> None:
    """Check that every student tensor equals its recorded selection of the teacher, bit for bit.

    Exit 0 when all match, 1 when any does not (the first ones are listed).
    """
    console = make_console(quiet)
    with _errors_exit():
        result = wsel.verify_student(teacher.open(), student)
    doc = {
        "schema": 1,
        "wsel_version": __version__,
        "command": "verify",
        "teacher": teacher.location,
        "student": str(student),
        "tensors_checked": result.checked,
        "ok": result.ok,
        "mismatches": result.mismatches,
    }
    if as_json:
        click.echo(report_json(doc))
    if result.ok:
        if console is not None:
            message = f"{student}: all {result.checked} tensors equal their selection of the teacher"
            console.print(printable(message), markup=False, emoji=False, soft_wrap=True)  # a path is text
        return
    shown = "; ".join(result.mismatches[:3]) + (
        f"; and {len(result.mismatches) - 3} more" if len(result.mismatches) > 3 else ""
    )
    count = len(result.mismatches)
    problem = f"{student}: {count} mismatch{'es' if count > 1 else ''}: {shown}"
    click.echo(f"wsel: error: {printable(problem)}", err=True)
    sys.exit(1)


def report_json(doc: dict[str, Any]) -> str:
    from wsel.report import dumps

    return dumps(doc)


def _plan(teacher: CheckpointIndex, student: StudentArgs, options: PlanOptions) -> tuple[Plan, StudentSearch | None]:
    """The plan, and with --target-params the search whose first candidate it plans."""
    sets, search = list(student.sets), None
    if student.target_params is not None:
        search = wsel.search_students(
            teacher, student.target_params, sets=sets, teacher_config=student.teacher_config, options=options,
            multiple_of=student.multiple_of,
        )  # fmt: skip
        sets += [f"{key}={value}" for key, value in search.candidates[0].sets.items()]
    plan = wsel.build_plan(teacher, student.config, sets=sets, teacher_config=student.teacher_config, options=options)
    return plan, search


def _with_search(doc: dict[str, Any], search: StudentSearch | None) -> dict[str, Any]:
    """The report, with the candidates of --target-params under `search` (the plan is the first one's)."""
    return doc if search is None else {**doc, "search": search.to_dict()}


def _emit(console: Any, doc: dict[str, Any], as_json: bool, report_file: Path | None, render: Any, md: Any) -> None:
    if report_file is not None:
        _save_report(doc, report_file, md)
    if as_json:
        click.echo(report_json(doc))
    elif console is not None:
        render(console, doc)


def _save_report(doc: dict[str, Any], path: Path, md: Any) -> None:
    text = md(doc) if path.suffix == ".md" else report_json(doc) + "\n"
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise OutputError(f"{path}: cannot write the report: {e.strerror or e}") from None


def _check_writable(path: Path) -> None:
    folder = path.parent
    if not folder.is_dir():
        raise OutputError(f"{path}: cannot write the report: folder {folder} does not exist")
    if path.is_dir() or not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"{path}: cannot write the report: permission denied")


class _errors_exit:
    """Turn a WselError into its one-line message on stderr and exit code; let others propagate."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, WselError):
            click.echo(f"wsel: error: {printable(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        if isinstance(exc, KeyboardInterrupt):
            click.echo("wsel: interrupted", err=True)
            sys.exit(130)


def main() -> None:
    # huggingface_hub logs its own retries and warnings on stderr; errors reach the user as wsel's one line.
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    # A run builds a few small objects per tensor, and no reference cycles: the cyclic collector's default
    # pace (every 700 allocations) took a quarter of `inspect`'s time on 300,000 tensors, for nothing.
    gc.set_threshold(50_000, 20, 20)
    cli(prog_name="wsel")
