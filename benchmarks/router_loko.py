"""Leave-one-kind-out: how well are kinds of image refused that nobody has collected yet?

For every kind *k* of ``other_modalities``, a router is trained with the shipped recipe but without
any image of *k*; then every image of *k* (train and val, none of which that router saw) is read by
the whole system: that router, and the shipped specialists with their feature-space checks (which
never see negatives at all, so they are the same in every fold).

Each fold leaves out a whole **family** of related kinds (``FAMILIES``: all CT, all non-brain MRI,
all other X-rays, …), not one kind: leaving out head CT while chest and abdominal CT stay in would
still teach the router what CT looks like. This is stricter than one kind at a time (a lower bound
of it) and needs 6 routers instead of 17.

    python benchmarks/router_loko.py --train            # trains the missing routers (~5 min each on 2 cores)
    python benchmarks/router_loko.py --artifacts DIR    # evaluates routers already trained into DIR

The routers are not committed (6 × 7 MB); the section in docs/BENCHMARKS.md is the record.
Exits non-zero when its data or a router is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from _common import DATASETS, ROOT, WEIGHTS, machine, write_section

TARGET = 0.95
FAMILIES = {
    "ct": ["head_ct", "chest_ct", "abdominal_body_ct"],
    "mri": ["mri_msk_spine", "mri_cardiac", "mri_body_other"],
    "xray": ["dental_xray", "mammography", "xray_angiography", "xray_msk"],
    "ultrasound": ["ultrasound_fetal", "ultrasound_other"],
    "optical": ["endoscopy", "fundus_photo", "oct_angiography"],
    "microscopy": ["histopathology", "microscopy"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=ROOT / "var" / "loko", help="where the fold routers live")
    parser.add_argument("--train", action="store_true", help="train the routers that are missing")
    parser.add_argument("--epochs", type=int, help="override the recipe's epochs (say so in the report)")
    args = parser.parse_args()
    folder = DATASETS / "other_modalities"
    if not (folder / "train").is_dir() or not (DATASETS / "chest_xray" / "train").is_dir():
        print(f"error: missing benchmark data under {DATASETS}")
        return 1
    import torch

    from apps.diagnosis.pipeline import TwoStagePipeline, find_artifacts, load_artifact
    from apps.diagnosis.pipeline.training import DEFAULTS, train

    torch.set_num_threads(2)
    kinds = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    shipped = find_artifacts(WEIGHTS)
    specialists = {task: load_artifact(shipped[task], lazy=True) for task in ("chest", "brain")}
    epochs = args.epochs or int(json.loads((shipped["router"] / "card.json").read_text())["training"]["epochs"])
    unassigned = set(kinds) - {k for family in FAMILIES.values() for k in family}
    if unassigned:
        print(f"error: kinds in no family: {', '.join(sorted(unassigned))} (add them to FAMILIES)")
        return 1
    rows = []
    for family, members in FAMILIES.items():
        artifact_dir = args.artifacts / f"loko-{family}"
        excluded = ",".join(members)
        if not (artifact_dir / "card.json").is_file():
            if not args.train:
                print(f"error: no router trained without {family} in {artifact_dir} (run with --train)")
                return 1
            train("router", DATASETS, args.artifacts, version=f"loko-{family}", exclude_kinds=excluded, epochs=epochs)
        router = load_artifact(artifact_dir, lazy=True)
        if router.card["training"].get("exclude_kinds") != excluded:
            print(f"error: {artifact_dir} was trained without {router.card['training'].get('exclude_kinds')!r}")
            return 1
        pipe = TwoStagePipeline(router=router, specialists=specialists)
        for kind in members:
            files = sorted((folder / "train" / kind).iterdir()) + sorted((folder / "val" / kind).iterdir())
            results = [pipe.run(p.read_bytes()) for p in files]
            by_router = sum(r.refusal_code in {"other_modality", "unclear_route"} for r in results)
            refused = sum(r.refused for r in results)
            codes = Counter(r.refusal_code or f"accepted as {r.task}" for r in results)
            rows.append((family, kind, len(results), by_router, refused, codes))
            print(f"{family}/{kind}: refused {refused}/{len(results)} (router alone {by_router})")

    met = all(refused / n >= TARGET for _, _, n, _, refused, _ in rows)
    recipe = DEFAULTS["router"]
    body = f"""## Leave-one-kind-out refusal (`benchmarks/router_loko.py`)

Machine: {machine()}. For each kind, a router trained with the shipped recipe ({epochs} epochs, {recipe["img_size"]} px,
every other kind of `other_modalities/train` plus synthetic negatives) but **without that kind and its whole family**
(all CT, all non-brain MRI, all other X-rays, all ultrasound, all optical, all microscopy), then every image of the kind
(train and val: none seen by that router) read by the whole system, with the shipped specialists
(`{specialists["chest"].version}`, `{specialists["brain"].version}`) and their feature-space checks. This is the honest
estimate for kinds nobody has collected yet.

Target ≥ {TARGET} refused in every kind left out: {"met" if met else "**not met**"}.

| family left out | kind | n | refused by the router alone | refused by the system | rate | how each image ended |
|---|---|---|---|---|---|---|
""" + "\n".join(
        f"| {family} | {kind} | {n} | {by_router} | {refused} | {refused / n:.3f} | "
        f"{', '.join(f'{c} {k}' for c, k in sorted(codes.items()))} |"
        for family, kind, n, by_router, refused, codes in rows
    )
    write_section("loko", body)
    print("wrote docs/BENCHMARKS.md (loko section)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
