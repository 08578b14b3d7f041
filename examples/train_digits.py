"""Train a classifier on data streamed from dosna, save it with its lineage, reload it.

    python examples/train_digits.py [--directory DIR] [--epochs 20] [--learner mlp]
    python examples/train_digits.py --learner torch-mlp        # PyTorch: DataLoader, 2 workers
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

``--learner torch-mlp`` trains a PyTorch MLP instead, from a
``torch.utils.data.DataLoader`` with 2 worker processes over
``dosna.train.torch.IterableDataset`` (the same chunk-aware, seeded order),
and saves its ``state_dict`` the same way.
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


def train_torch(
    con: dn.Connection, x: dn.Dataset, y: dn.Dataset, args: argparse.Namespace
) -> tuple[str, int]:
    """Train a PyTorch MLP from a DataLoader (2 workers) over the IterableDataset; save it. Returns (model, version)."""
    import torch
    from torch.utils.data import DataLoader

    from dosna.train.torch import IterableDataset

    n = x.shape[0]
    n_train = n - round(n * 0.2)
    data = IterableDataset(x, y, batch_size=args.batch_size, rows=(0, n_train), seed=args.seed)
    loader = DataLoader(data, batch_size=None, num_workers=2)  # workers start anew each epoch
    torch.manual_seed(args.seed)
    n_classes = int(np.max(y[...])) + 1
    model = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, n_classes)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    test_x = torch.from_numpy(x[n_train:])
    test_y = torch.from_numpy(y[n_train:])
    accuracy = 0.0
    for epoch in range(args.epochs):
        data.set_epoch(epoch)  # the workers of this epoch copy it when they start
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = float((model(test_x).argmax(1) == test_y).float().mean())
        if not args.no_progress:
            print(f"epoch {epoch + 1}/{args.epochs}: test accuracy {accuracy:.4f}")
    lineage = {
        "x": x.name,
        "y": y.name,
        "train_rows": [0, n_train],
        "test_rows": [n_train, n],
        "n_classes": n_classes,
        "learner": "torch-mlp",
        "loader": "DataLoader(IterableDataset), 2 workers",
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
    }
    name = "digits-torch-mlp"
    version = ModelStore(con).save(
        name, model.state_dict(), lineage=lineage, metrics={"test_accuracy": accuracy}
    )
    print(f"model {name} version {version}: test accuracy {accuracy:.4f}")
    saved = ModelStore(con).load(name, version)
    exact = all(np.array_equal(saved[k], v.numpy()) for k, v in model.state_dict().items())
    fresh = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, n_classes)
    )
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in saved.items()})
    with torch.no_grad():
        again = float((fresh(test_x).argmax(1) == test_y).float().mean())
    print(f"reloaded {len(saved)} tensors, bit-exact: {exact}; reloaded model, test accuracy: {again:.4f}")
    if not exact or again != accuracy:
        raise SystemExit("the reloaded model differs from the trained one")
    if again < 0.95:
        raise SystemExit(f"test accuracy {again:.4f} is below 0.95")
    return name, version


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--directory", help="where the hdf5 connection goes (default: a temporary directory)")
    parser.add_argument("--engine", default="cpu", help="cpu, joblib or mpi (under mpiexec)")
    parser.add_argument("--learner", default="mlp", help="mlp, softmax, or torch-mlp (PyTorch DataLoader)")
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
        if args.learner == "torch-mlp":
            if args.engine == "mpi":
                parser.error("--learner torch-mlp runs in one process (with 2 DataLoader workers)")
            train_torch(con, x, y, args)
            return

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
