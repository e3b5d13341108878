"""Leave-one-kind-out: how well are kinds of image refused that nobody has collected yet?

For every kind *k* of ``other_modalities``, a router is trained with the shipped recipe but without
any image of *k* (``exclude_kinds=k``); then every image of *k* (train and val, none of which that
router saw) is read by the whole system: that router, and the shipped specialists with their
feature-space checks (which never see negatives at all, so they are the same in every fold).

    python benchmarks/router_loko.py --train            # trains the missing routers (~4 min each on 2 cores)
    python benchmarks/router_loko.py --artifacts DIR    # evaluates routers already trained into DIR

The routers are not committed (17 × 7 MB); the section in docs/BENCHMARKS.md is the record.
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
    rows = []
    for kind in kinds:
        artifact_dir = args.artifacts / f"loko-{kind}"
        if not (artifact_dir / "card.json").is_file():
            if not args.train:
                print(f"error: no router trained without {kind} in {artifact_dir} (run with --train)")
                return 1
            train("router", DATASETS, args.artifacts, version=f"loko-{kind}", exclude_kinds=kind, epochs=epochs)
        router = load_artifact(artifact_dir, lazy=True)
        excluded = router.card["training"].get("exclude_kinds")
        if excluded != kind:
            print(f"error: {artifact_dir} was trained without {excluded!r}, not {kind!r}")
            return 1
        pipe = TwoStagePipeline(router=router, specialists=specialists)
        files = sorted((folder / "train" / kind).iterdir()) + sorted((folder / "val" / kind).iterdir())
        results = [pipe.run(p.read_bytes()) for p in files]
        by_router = sum(r.refusal_code in {"other_modality", "unclear_route"} for r in results)
        refused = sum(r.refused for r in results)
        codes = Counter(r.refusal_code or f"accepted as {r.task}" for r in results)
        rows.append((kind, len(results), by_router, refused, codes))
        print(f"{kind}: refused {refused}/{len(results)} (router alone {by_router})")

    met = all(refused / n >= TARGET for _, n, _, refused, _ in rows)
    recipe = DEFAULTS["router"]
    body = f"""## Leave-one-kind-out refusal (`benchmarks/router_loko.py`)

Machine: {machine()}. For each kind, a router trained with the shipped recipe ({epochs} epochs, {recipe["img_size"]} px,
every other kind of `other_modalities/train` plus synthetic negatives) but **without that kind**, then every image of
the kind (train and val: none seen by that router) read by the whole system, with the shipped specialists
(`{specialists["chest"].version}`, `{specialists["brain"].version}`) and their feature-space checks. This is the honest
estimate for kinds nobody has collected yet.

Target ≥ {TARGET} refused in every kind left out: {"met" if met else "**not met**"}.

| kind left out | n | refused by the router alone | refused by the system | rate | how each image ended |
|---|---|---|---|---|---|
""" + "\n".join(
        f"| {kind} | {n} | {by_router} | {refused} | {refused / n:.3f} | "
        f"{', '.join(f'{c} {k}' for c, k in sorted(codes.items()))} |"
        for kind, n, by_router, refused, codes in rows
    )
    write_section("loko", body)
    print("wrote docs/BENCHMARKS.md (loko section)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
