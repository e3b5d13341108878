"""What the shipped AI says about real images that were mishandled before they reached it.

Validation images (carved from ``train/`` exactly as the active specialist's trainer carved them;
the test split is not read) are altered in ways a real upload can be: a contrast-inverted export,
a film rotated or upside down, a tight crop, a blurred or very dark export, a 2×2 contact sheet.
Each altered image goes through the whole production pipeline (router, feature-space check,
specialist, indeterminate margin) as PNG bytes, and is counted as refused, indeterminate, read
right or **read wrong** (a definite answer that is not the image's label: what the clinician must
not be shown).

For the reads that were not refused, it also asks whether a horizontal-flip agreement check (read
the mirrored image too, and call the read indeterminate when the two labels differ) would have
caught the wrong ones, and at what cost in right reads. That check is not shipped; this measures
whether it is worth shipping.

    python benchmarks/perturbations.py [--per-task 200] [--compare apps/diagnosis/weights/brain/<version>]

``--compare`` reads the same images again with another version of a specialist in place of the
shipped one (same router), side by side.

Writes the "perturbations" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import itertools
import random
import sys
from collections import Counter
from collections.abc import Callable

from _common import DATASETS, WEIGHTS, machine, stored_validation, write_section
from PIL import Image, ImageFilter, ImageOps


def _tiled(im: Image.Image) -> Image.Image:
    sheet = Image.new("L", im.size)
    small = im.resize((im.width // 2, im.height // 2))
    for x in (0, im.width // 2):
        for y in (0, im.height // 2):
            sheet.paste(small, (x, y))
    return sheet


def _centre(im: Image.Image, keep: float) -> Image.Image:
    dx, dy = int(im.width * (1 - keep) / 2), int(im.height * (1 - keep) / 2)
    return im.crop((dx, dy, im.width - dx, im.height - dy))


ALTERATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "as stored": lambda im: im,
    "contrast inverted": ImageOps.invert,
    "rotated 90°": lambda im: im.rotate(90, expand=True),
    "upside down": lambda im: im.rotate(180),
    "centre 40 % crop": lambda im: _centre(im, 0.4),
    "blurred (radius 4 px)": lambda im: im.filter(ImageFilter.GaussianBlur(4)),
    "very dark (gamma 3)": lambda im: im.point(lambda v: round(255 * (v / 255) ** 3)),
    "2×2 contact sheet": _tiled,
}


def png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


def validation_files(task: str, folder, cfg: dict) -> list[tuple[str, str]]:
    """(path, label) of the validation images the active version was chosen and calibrated on."""
    from apps.diagnosis.pipeline.training import TASK_LABELS

    labels = TASK_LABELS[task]
    _, ys, names, mask, _, _ = stored_validation(task, folder, cfg)
    return [(str(folder / labels[y] / n), labels[y]) for n, y, m in zip(names, ys, mask, strict=True) if m]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-task", type=int, default=200, help="validation images per task (a seeded sample)")
    parser.add_argument("--compare", action="append", default=[], help="another specialist artifact folder")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    import torch

    from apps.diagnosis.pipeline import TwoStagePipeline, load_artifact

    torch.set_num_threads(2)
    pipe = TwoStagePipeline.from_directory(WEIGHTS)
    pipelines = {task: [(art.version, pipe)] for task, art in pipe.specialists.items()}
    for folder in args.compare:
        other = load_artifact(folder)
        specialists = {**pipe.specialists, other.task: other}
        pipelines[other.task].append((other.version, TwoStagePipeline(pipe.router, specialists)))
    rows = []
    for task, sub in (("chest", "chest_xray"), ("brain", "brain_mri")):
        folder = DATASETS / sub / "train"
        if not folder.is_dir():
            print(f"{folder} not found: this benchmark needs ../shared/datasets", file=sys.stderr)
            return 1
        spec = pipe.specialists[task]
        files = validation_files(task, folder, spec.card["training"])
        sample = random.Random(0).sample(files, min(args.per_task, len(files)))
        for (name, alter), (version, reader) in itertools.product(ALTERATIONS.items(), pipelines[task]):
            counts: Counter[str] = Counter()
            for path, label in sample:
                with Image.open(path) as im:
                    altered = alter(im.convert("L"))
                read = reader.run(png(altered))
                if read.refused:
                    counts["refused"] += 1
                    continue
                if read.indeterminate:
                    counts["indeterminate"] += 1
                else:
                    counts["right" if read.label == label else "wrong"] += 1
                mirrored = reader.run(png(ImageOps.mirror(altered)))
                agrees = not mirrored.refused and mirrored.label == read.label
                if not read.indeterminate and not agrees:
                    counts["flip caught wrong" if read.label != label else "flip flagged right"] += 1
            rows.append((version, name, len(sample), counts))
            print(version, name, dict(counts), flush=True)

    def pct(k: int, n: int) -> str:
        return f"{k} ({100 * k / n:.0f} %)" if n else "0"

    table = [
        "| specialist | image | n | refused | indeterminate | read right | **read wrong** | wrong reads a flip check catches | right reads it would flag |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for version, name, n, c in rows:
        table.append(
            f"| {version} | {name} | {n} | {pct(c['refused'], n)} | {pct(c['indeterminate'], n)} | "
            f"{pct(c['right'], n)} | **{pct(c['wrong'], n)}** | {c['flip caught wrong']} of {c['wrong']} | "
            f"{c['flip flagged right']} of {c['right']} |"
        )
    body = "\n".join(
        [
            "## Mishandled images (`benchmarks/perturbations.py`)",
            "",
            f"Machine: {machine()}. {args.per_task} validation images per task (carved from `train/` as the "
            "active specialist's trainer carved them; a seeded sample), each altered as named and read by the "
            "whole production pipeline from PNG bytes. *Read wrong*: a definite label that is not the "
            "image's. The flip check (read the mirrored image too; indeterminate when the labels differ) "
            "is not shipped: the last two columns measure it.",
            "",
            *table,
        ]
    )
    print(body)
    if not args.no_write:
        write_section("perturbations", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
