"""Train a classifier on data streamed from dosna, save it with its lineage, reload it.

    python examples/train_digits.py [--directory DIR] [--epochs 20] [--learner mlp]
    mpiexec -n 2 python -m mpi4py examples/train_digits.py --engine mpi --directory DIR

1. Stores scikit-learn's handwritten digits (1,797 8x8 images, shipped with
   scikit-learn, no download) in dosna on the hdf5 backend: samples in
   ``digits.x`` (float32, pixel values scaled to [0, 1]), labels in
   ``digits.y``, rows in a seeded random order (recorded in the attributes).
2. Trains the learner on the first 80% of the rows, streaming shuffled
   mini-batches, and evaluates on the last 20% after every epoch.
3. Saves the model as a new version with its lineage, reloads it, checks the
   tensors are bit-exact and that the reloaded model scores the same, and
   prints the lineage.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import tempfile

import numpy as np
from sklearn.datasets import load_digits

import dosna as dn
from dosna.tensors import ModelStore
from dosna.train import resolve_learner, train


def store_digits(con: dn.Connection, seed: int) -> None:
    """Put the digits into ``digits.x`` / ``digits.y`` unless they are there already."""
    if con.has_dataset("digits.x") and con.has_dataset("digits.y"):
        return
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    attrs = {"source": "sklearn.datasets.load_digits", "row_order_seed": seed}
    con.create_dataset(
        "digits.x",
        data=(digits.data[order] / 16).astype(np.float32),
        chunk_size=(256, 64),
        attrs={**attrs, "scaled": "pixel / 16"},
    )
    con.create_dataset("digits.y", data=digits.target[order].astype(np.int64), chunk_size=(256,), attrs=attrs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--directory", help="where the hdf5 connection goes (default: a temporary directory)")
    parser.add_argument("--engine", default="cpu", help="cpu, joblib or mpi (under mpiexec)")
    parser.add_argument("--learner", default="mlp")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    directory = args.directory
    if directory is None:
        if args.engine == "mpi":
            parser.error("--engine mpi needs a --directory that every rank sees")
        directory = tempfile.mkdtemp(prefix="dosna-digits-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        print(f"data in {directory}, a temporary directory removed at the end (--directory DIR keeps it)")
    os.makedirs(directory, exist_ok=True)

    with dn.Connection("digits", backend="hdf5", engine=args.engine, directory=directory) as con:
        root = con.engine.is_root
        say = print if root else (lambda *a, **k: None)
        store_digits(con, args.seed)
        x, y = con["digits.x"], con["digits.y"]
        say(f"stored {x.shape[0]} samples in {os.path.join(directory, 'digits')}: {x!r}")

        result = train(
            con,
            x,
            y,
            learner=args.learner,
            model=f"digits-{args.learner}",
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=not args.no_progress,
        )
        say(result.summary())

        store = ModelStore(con)
        tensors = store.load(result.model, result.version)
        saved = result.learner.state_dict()
        exact = all(np.array_equal(tensors[k], np.asarray(v)) for k, v in saved.items())
        say(
            f"reloaded {len(tensors)} tensors: {', '.join(f'{k} {v.shape}' for k, v in tensors.items())}; "
            f"bit-exact: {exact}"
        )

        lineage = store.manifest(result.model, result.version)["lineage"]
        fresh = resolve_learner(args.learner)(64, lineage["n_classes"], seed=args.seed + 1)
        fresh.load_state_dict(tensors)
        test = slice(*lineage["test_rows"])
        accuracy = float((fresh.predict(x[test]) == y[test]).mean())
        say(f"reloaded model, test accuracy: {accuracy:.4f}")
        say("lineage:\n" + json.dumps(lineage, indent=2))
        if not exact or abs(accuracy - result.metrics["test_accuracy"]) > 1e-12:
            raise SystemExit("the reloaded model differs from the trained one")
        if accuracy < 0.95:
            raise SystemExit(f"test accuracy {accuracy:.4f} is below 0.95")


if __name__ == "__main__":
    main()
