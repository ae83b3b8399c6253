"""Render the results tables of ``docs/results.md`` and ``README.md`` from ``benchmarks/results/*.json``.

Usage::

    python benchmarks/render_results.py           # rewrite docs/results.md and the README's table
    python benchmarks/render_results.py --check   # exit 1 when either differs from what would be rendered

Every figure in the docs and the README comes from here: a benchmark writes
JSON, this script turns it into one table per benchmark, each row naming the
machine, the commit and the date of its run and the command that produced it.
A result file holds its own conditions: ``commit`` (the code measured),
``started`` or ``date``, ``machine``, and ``benchmark_command``. Fields filled
in afterwards are listed in ``filled_in`` and explained in ``provenance``
(the rendered commit or date is marked *); rows a
later run replaced are listed in ``superseded_rows`` with the reason and
left out, and a whole file that a later one replaced is deleted (its history
stays in git) or marked ``"superseded": "<why>"``. Needs only the standard library.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README_START = "<!-- results:start: rendered by benchmarks/render_results.py from benchmarks/results/*.json -->"
README_END = "<!-- results:end -->"
CONDITIONS = ("machine", "commit", "date", "command")

# What the rows of the CPU training benchmark are (cpu_benchmark.py's ``--rows``).
RECIPES = {
    "cnn_cpu": "CPU `cnn` profile (`conf/cpu`)",
    "cnn": "GPU `cnn` recipe (`conf/base`), run on the CPU",
    "vit_cpu": "CPU ViT profile (`conf/cpu`)",
    "vit_cpu_plain": "plain CPU ViT, epochs fitted to the budget (comparison)",
    "vit": "GPU ViT recipe (`conf/base`), run on the CPU",
    "simple_cnn": "`simple_cnn`, the tutorial's recipe",
}
PREDICT_STAGES = {
    "predict_pipeline": "`predict` pipeline node: decoding, model, CSV rows and gallery",
    "predict_pipeline_no_gallery": "the same without the gallery (as `image-recognition predict`)",
    "onnxruntime": "ONNX Runtime on the exported graph, same decoding",
    "decode_and_resize_only": "decoding and resizing alone",
    "inference_only_pytorch": "model alone, PyTorch in the recipe's precision",
    "inference_only_pytorch_fp32": "model alone, PyTorch fp32",
    "inference_only_onnxruntime": "model alone, ONNX Runtime fp32",
}


@dataclass(frozen=True)
class Row:
    """One rendered row: the benchmark's own cells, a one-line summary for the README, and its run's conditions."""

    key: str
    cells: tuple[str, ...]
    summary: str
    conditions: tuple[str, ...]
    when: str  # the run's start (or date): orders a benchmark's rows, newest first


@dataclass(frozen=True)
class Table:
    """How one benchmark is rendered: a title, what it measures, its own columns and how rows are made."""

    title: str
    about: str
    columns: tuple[str, ...]
    rows: Callable[[dict[str, Any]], list[tuple[str, tuple[str, ...], str]]]


def percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def seconds(value: float) -> str:
    return f"{value:,.0f} s" if value >= 10 else f"{value:.1f} s"


def rate(value: float) -> str:
    return f"{value:,.0f}"


def machine(data: dict[str, Any]) -> str:
    """The machine a result ran on, in words: its GPU or CPU, the cores, and whether the CPU has native bf16."""
    info = data.get("machine", {})
    if info.get("gpu"):
        return f"{info['gpu']}, CUDA {info.get('cuda', '?')}"
    words = [info.get("cpu") or info.get("processor") or "unknown CPU"]
    cores = info.get("cpu_count") or info.get("cpus")
    if cores:
        words.append(f"{cores} cores")
    if "native_bf16" in info:
        words.append("native bf16" if info["native_bf16"] else "no native bf16")
    if data.get("emulated"):
        words.append(f"run as an {data['emulated']['as']} (emulated: {', '.join(data['emulated']['environment'])})")
    return ", ".join(words)


def conditions(data: dict[str, Any]) -> tuple[str, str, str, str]:
    """Machine, commit, date and command of a result file; a commit or date filled in afterwards is marked *."""
    filled_in = data.get("filled_in", [])  # which fields were added afterwards (see provenance)
    commit = data.get("commit")
    commit_cell = f"`{commit[:7]}{'+dirty' if data.get('dirty') else ''}`" if commit else "unknown"
    commit_cell += "*" if "commit" in filled_in else ""
    date_cell = result_date(data) + ("*" if "date" in filled_in else "")
    command = data.get("benchmark_command")
    if not command:
        raise ValueError("no benchmark_command: add the command that produced it")
    return machine(data), commit_cell, date_cell, f"`{command}`"


def result_date(data: dict[str, Any]) -> str:
    return str(data.get("started") or data.get("date") or "unknown")[:10]


def cpu_precision(training: dict[str, Any], info: dict[str, Any]) -> str:
    """The precision a CPU row trained in: bf16 autocast only where asked and (for ``auto``) native."""
    mode = training.get("autocast", "auto")
    return "bf16" if mode == "bf16" or (mode == "auto" and info.get("native_bf16")) else "fp32"


def cpu_rows(data: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """The CPU training benchmark: one row per recipe."""
    rows = []
    for key, result in data["results"].items():
        training = result["training"]
        cells = (
            RECIPES.get(key, f"`{key}`"),
            str(training.get("seed", data.get("seed"))),
            str(training["epochs"]),
            cpu_precision(training, data["machine"]),
            f"{result['train_images']:,}" if "train_images" in result else "",
            f"{result['parameters']:,}",
            f"{percent(result['test_accuracy'])} ({result['tta']})",
            percent(result["test_accuracy_no_tta"]) if "test_accuracy_no_tta" in result else "",
            seconds(result["train_time_s"]),
            rate(result["images_per_s"]),
        )
        summary = f"{percent(result['test_accuracy'])} test accuracy, {seconds(result['train_time_s'])} of training"
        rows.append((key, cells, summary))
    return rows


def reference_rows(data: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """airbench94's own code: one row per seed."""
    precision = data.get("autocast", "fp32")
    return [
        (
            "reference",
            (str(run["seed"]), precision, percent(run["test_accuracy_tta"]), seconds(run["wall_time_s"])),
            f"{percent(run['test_accuracy_tta'])} test accuracy (its own TTA), seed {run['seed']}",
        )
        for run in data["runs"]
    ]


def versus_rows(data: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """The engine against airbench94's code in one process: one row per precision."""
    rows = []
    for precision, sides in data["precisions"].items():
        project, reference = sides["project"], sides["reference"]
        window = f"{project['warmup_steps'] + 1}–{project['steps_run']}"
        ratio = data["ratios"][precision]
        cells = (precision, window, rate(project["images_per_s"]), rate(reference["images_per_s"]), f"{ratio:.2f}×")
        rows.append((precision, cells, f"{ratio:.2f}× airbench94's images/s in {precision}, steps {window}"))
    return rows


DAG_MODELS = ("cnn", "vit", "simple_cnn")


def benchmark_of(data: dict[str, Any], default: str) -> str:
    """The table a result file belongs to: a DAG run given ``training_budget_s`` is an equal-budget comparison."""
    benchmark = data.get("benchmark", default)
    if benchmark == "dag" and "training_budget_s=" in data.get("command", ""):
        return "equal_budget"
    return benchmark


def trained(data: dict[str, Any], model: str) -> str:
    """A model's test accuracy and how far it trained in a DAG run: "89.40%, 12.1 epochs"."""
    training = (data.get("training") or {}).get(model) or {}
    epochs = f", {training['epochs']:.1f} epochs" if training.get("epochs") is not None else ""
    return f"{percent(data['test_accuracy'][model])}{epochs}"


def dag_rows(data: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """The whole DAG as a new user runs it: one row, its training budgets and each model's accuracy."""
    training = data.get("training") or {}
    budgets = ", ".join(
        f"`{model}` {seconds(training[model]['budget_s'])}"
        for model in DAG_MODELS
        if (training.get(model) or {}).get("budget_s") is not None
    )
    cells = (seconds(data["wall_time_s"]), budgets or "epochs", *(trained(data, model) for model in DAG_MODELS))
    accuracies = ", ".join(f"`{model}` {percent(data['test_accuracy'][model])}" for model in DAG_MODELS)
    summary = f"{data['wall_time_s'] / 60:.1f} minutes for all three models; test accuracy {accuracies}"
    return [("dag_avx2" if data.get("emulated") else "dag", cells, summary)]


def equal_budget_rows(data: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """A DAG run with one budget for every model: a row per model, best first."""
    rows = []
    ranked = sorted(DAG_MODELS, key=lambda model: data["test_accuracy"][model], reverse=True)
    for model in ranked:
        training = data["training"][model]
        cells = (
            seconds(training["budget_s"]),
            f"`{model}`",
            percent(data["test_accuracy"][model]),
            f"{training['steps']:,} of {training['planned_steps']:,}",
            f"{training['epochs']:.2f}",
            rate(training["train_images_per_s"]),
            seconds(training["training_wall_time_s"]),
        )
        rows.append((f"{model}@{training['budget_s']:g}", cells, f"`{model}` {percent(data['test_accuracy'][model])}"))
    return rows


def data_processing_rows(data: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    runs = data["wall_s_runs"]
    cells = (
        f"`{data['command']}`",
        f"{data['wall_s_mean']:.1f} s (mean of {len(runs)})",
        f"{data['peak_rss_mib']:,} MiB",
    )
    return [("data_processing", cells, f"{data['wall_s_mean']:.1f} s")]


def ddp_rows(data: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """Data-parallel training on the CPU: one row per recipe and process layout."""
    return [
        (
            f"{row['recipe']} {row['processes']}",
            (f"`{row['recipe']}`", row["layout"], str(row["batch_size"]), rate(row["images_per_s"])),
            f"{rate(row['images_per_s'])} images/s",
        )
        for row in data["results"]
    ]


def estimate_rows(data: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """Estimated GPU training time of the GPU recipes: one row per model."""
    rows = []
    for model, estimate in data["estimates"].items():
        low, high = estimate["estimated_time_s"]["low"], estimate["estimated_time_s"]["high"]
        share = estimate["sustained_fraction"]
        cells = (
            f"`{model}`",
            f"{estimate['training_gflops_per_image']:.3f}",
            f"{estimate['images_seen']:,}",
            f"{estimate['total_pflops']:.2f}",
            f"{percent(share['low'])}–{percent(share['high'])}",
            f"{seconds(low)}–{seconds(high)}".replace(" s–", "–"),
        )
        rows.append((model, cells, f"{cells[-1]} of training, estimated from FLOPs, not measured"))
    return rows


def predict_rows(data: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """Predicting image files on the CPU: one row per stage measured."""
    return [
        (
            stage,
            (PREDICT_STAGES.get(stage, f"`{stage}`"), rate(result["images_per_s"])),
            f"{rate(result['images_per_s'])} images/s, {data['files']:,} {data['file_format']} files",
        )
        for stage, result in data["results"].items()
    ]


def image_folder_rows(data: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """Decoding a folder of image files: one row per run."""
    processes = f"{data['workers']}" + (" (the default)" if data.get("workers_default") else "")
    return [
        (
            f"run {row['run']}",
            (f"{data['files']:,} {data['file_size']}", processes, seconds(row["seconds"]), rate(row["images_per_s"])),
            f"{data['files']:,} PNG files decoded in {seconds(row['seconds'])}",
        )
        for row in data["rows"]
    ]


def folder_vs_archive_rows(data: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """CIFAR-10 as an image folder against the archive route: one row."""
    splits = ", ".join(f"{split} {result['folder_images']:,}" for split, result in data["splits"].items())
    training = data.get("training") or {}
    accuracy = f"{percent(training['test_accuracy'])} ({training['tta']})" if training else "not trained"
    cells = (
        f"{data['train_per_class']:,} / {data['test_per_class']:,}",
        splits,
        "identical" if data["equal"] else "different",
        accuracy,
    )
    summary = f"same images as the archive route: {cells[2]}; CPU `cnn` recipe on the folder: {accuracy}"
    return [("folder", cells, summary)]


def generic_rows(data: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    """A benchmark without a table of its own yet: one row pointing at its file."""
    return [("result", (f"`{data['_file']}`",), f"see `{data['_file']}`")]


TABLES = {
    "cpu": Table(
        "Training on the CPU",
        "Each recipe trained once on the real CIFAR-10 images and evaluated on the test split. The CPU profiles hold "
        "out 5,000 validation images; the GPU `cnn` recipe trains on all 50,000 (record mode).",
        (
            "recipe",
            "seed",
            "epochs",
            "precision",
            "training images",
            "parameters",
            "test accuracy (TTA)",
            "without TTA",
            "training time",
            "images/s",
        ),
        cpu_rows,
    ),
    "airbench_reference": Table(
        "airbench94's own code on the CPU",
        "The reference the GPU `cnn` recipe is compared with ([The CNN recipe against airbench94](airbench.md)): "
        "`legacy/airbench94.py`, read at run time, on the same images; the time is its own timer's.",
        ("seed", "precision", "test accuracy (its TTA)", "wall time"),
        reference_rows,
    ),
    "cpu_vs_reference": Table(
        "The engine against airbench94's code, images/s",
        "Training images/s of the GPU `cnn` recipe through the engine and of airbench94's code, in one process "
        "on the same images and threads, over the steps named (after a warm-up).",
        ("precision", "steps timed", "engine images/s", "airbench94 images/s", "engine / airbench94"),
        versus_rows,
    ),
    "dag": Table(
        "The whole DAG on the CPU",
        "Plain `kedro run` from a fresh clone, as a new user types it, with the archive in place and no tracking: "
        "wall time, fetch to report; the training budgets of the CPU recipes; each model's test accuracy and the "
        "epochs its budget gave it on that machine.",
        ("wall time", "training budgets", "`cnn`", "`vit`", "`simple_cnn`"),
        dag_rows,
    ),
    "equal_budget": Table(
        "The models at equal training budgets",
        "Plain `kedro run` from a fresh clone with `--params training_budget_s=N`: every model trains for the same "
        "N seconds on this machine (its speed measured first, its steps planned to fit), then is evaluated on the "
        "test split. Steps taken against planned, the epochs they make, the training images/s achieved, and the "
        "training time the budget bounds: from setup to the end of the final validation.",
        ("budget", "model", "test accuracy (TTA)", "steps", "epochs", "images/s", "training time"),
        equal_budget_rows,
    ),
    "data_processing": Table(
        "The data pipeline",
        "Fetch (archive already in place), verify, decode, validate and split the 60,000 images.",
        ("what", "wall time", "peak RSS"),
        data_processing_rows,
    ),
    "ddp": Table(
        "Data-parallel training on the CPU",
        "Images/s of one process against two data-parallel processes (gloo) on the same cores, synthetic images, "
        "the recipe's global batch.",
        ("recipe", "layout", "global batch", "images/s"),
        ddp_rows,
    ),
    "gpu_estimate": Table(
        "Estimated GPU training time (not a measurement)",
        "Training FLOPs per image from torch's flop counter, times the images of the run, over the share of an "
        "H100's dense bf16 peak each recipe can sustain (`SUSTAINED_FRACTIONS` in `benchmarks/common.py`).",
        ("recipe", "training GFLOPs per image", "images seen", "PFLOPs", "share of peak", "estimated time"),
        estimate_rows,
    ),
    "image_folder": Table(
        "Decoding an image folder",
        "`read_image_folder` on a generated folder of PNG files in `train/<class>/`, files just written: listing, "
        "checks, decoding and resizing to the model's size.",
        ("files", "processes", "wall time", "images/s"),
        image_folder_rows,
    ),
    "folder_vs_archive": Table(
        "CIFAR-10 as an image folder",
        "The first N training and test images of each class of the CIFAR-10 archive written as lossless PNG in "
        "`train/<class>/` and `test/<class>/`, decoded by the image-folder route and compared with the archive "
        "route by the sha256 of each image's pixels (as sets, per split, with labels); then the CPU `cnn` recipe "
        "trained on the folder (10% held out for validation) and tested on its `test/`.",
        ("per class (train / test)", "images", "pixels against the archive route", "test accuracy (TTA)"),
        folder_vs_archive_rows,
    ),
    "predict": Table(
        "Predicting image files on the CPU",
        "Images/s end to end from PNG files on disk, with the CPU profile's `cnn`, no TTA.",
        ("stage", "images/s"),
        predict_rows,
    ),
}

# The README's one table: (benchmark, row key, what it is). The newest current row of each is shown.
HEADLINE = (
    ("cpu", "cnn_cpu", "`cnn` trained on a CPU, `kedro run --env=cpu` recipe"),
    ("cpu", "vit_cpu", "ViT trained on a CPU, `kedro run --env=cpu` recipe"),
    ("cpu", "cnn", "GPU `cnn` recipe (airbench94's) run on a CPU"),
    ("dag", "dag", "plain `kedro run`, the whole DAG on a CPU with native bf16"),
    ("dag", "dag_avx2", "plain `kedro run`, the whole DAG as on an AVX2-only CPU (fp32)"),
    ("predict", "predict_pipeline", "`predict` pipeline on a folder of images"),
    ("gpu_estimate", "cnn", "GPU `cnn` recipe on one H100"),
    ("gpu_estimate", "vit", "GPU ViT recipe on one H100"),
)


def load_results(folder: Path = RESULTS) -> dict[str, list[Row]]:
    """Every result file's rows, grouped by benchmark, newest run first."""
    grouped: dict[str, list[Row]] = {}
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        if data.get("superseded"):
            continue
        data["_file"] = f"benchmarks/results/{path.name}"
        benchmark = benchmark_of(data, path.stem)
        table = TABLES.get(benchmark)
        make_rows = table.rows if table else generic_rows
        try:
            run = conditions(data)
            made = make_rows(data)
        except (KeyError, ValueError) as error:
            raise SystemExit(f"{path}: cannot render it ({error!r})") from error
        superseded, when = data.get("superseded_rows", {}), str(data.get("started") or data.get("date") or "")
        rows = [Row(key, cells, summary, run, when) for key, cells, summary in made if key not in superseded]
        grouped.setdefault(benchmark, []).extend(rows)
    for rows in grouped.values():
        rows.sort(key=lambda row: row.when, reverse=True)  # stable: a file's rows keep their order
    return grouped


def markdown_table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def render_results_page(grouped: dict[str, list[Row]]) -> str:
    """The whole of docs/results.md: one section and table per benchmark."""
    lines = [
        "# Results",
        "",
        "<!-- Rendered by benchmarks/render_results.py from benchmarks/results/*.json: edit those, not this. -->",
        "",
        "Every figure on this page is read from a JSON file in `benchmarks/results/` by",
        "`python benchmarks/render_results.py`, and the test suite fails when this page is stale. Each row names",
        "the machine, the commit and the date of its run and the command that produced it; the rest of a run's",
        "conditions (load average, CPU flags, library versions, the full recipe) are in its JSON. A figure",
        "measured at an older commit stays until its benchmark runs again. A commit or date marked * was filled",
        "in afterwards: the file's `provenance` field says from where. How each benchmark works:",
        "[Development](development.md#benchmarks).",
    ]
    order = [name for name in TABLES if name in grouped] + sorted(set(grouped) - set(TABLES))
    for name in order:
        table = TABLES.get(name) or Table(
            f"`{name}`", "No table layout for this benchmark yet.", ("result",), generic_rows
        )
        lines += ["", f"## {table.title}", "", f"Benchmark `{name}`. {table.about}", ""]
        lines += markdown_table(table.columns + CONDITIONS, [row.cells + row.conditions for row in grouped[name]])
    return "\n".join(lines) + "\n"


def render_readme_table(grouped: dict[str, list[Row]]) -> str:
    """The README's one table: the newest current row of each headline figure."""
    rows = []
    for benchmark, key, what in HEADLINE:
        found = [row for row in grouped.get(benchmark, []) if row.key == key]
        if found:
            rows.append((what, found[0].summary, *found[0].conditions))
    return "\n".join(markdown_table(("what", "result", *CONDITIONS), rows))


def splice_readme(readme: str, table: str) -> str:
    """The README with the text between its two result markers replaced by ``table``."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"README.md needs the markers {README_START!r} and {README_END!r}, in that order")
    return readme[: start + len(README_START)] + "\n" + table + "\n" + readme[end:]


def render(root: Path = ROOT) -> dict[Path, str]:
    """What docs/results.md and README.md should hold, rendered from the results under ``root``."""
    grouped = load_results(root / "benchmarks" / "results")
    readme = root / "README.md"
    return {
        root / "docs" / "results.md": render_results_page(grouped),
        readme: splice_readme(readme.read_text(encoding="utf-8"), render_readme_table(grouped)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed table differs from the JSON")
    parser.add_argument("--root", type=Path, default=ROOT, help="the project folder (default: this checkout)")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render(args.root).items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        names = ", ".join(str(path.relative_to(args.root)) for path in stale)
        print(f"stale results tables in {names}: run python benchmarks/render_results.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
