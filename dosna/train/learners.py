"""Learners: the models the training runner fits.

A learner is made by a factory ``make(n_features, n_classes, seed=0, **hyper)``
and offers five methods (see :class:`Learner`). The runner never looks inside:
it asks for gradients, averages them over MPI ranks and hands them back to
:meth:`Learner.step`, so any framework fits behind the interface.

Built in: ``softmax`` (softmax regression) and ``mlp`` (one hidden ReLU layer),
both in NumPy with the Adam optimiser, and ``torch-mlp`` when PyTorch is
installed. Your own learner is named ``package.module:function`` or
``path/to/file.py:function``, where ``function`` is such a factory; naming a
file executes it, like importing a module does.

A learner that also implements :meth:`Learner.training_state` and
:meth:`Learner.load_training_state` (the built-in ones do) is checkpointed after
every epoch, and an interrupted run continues exactly where it stopped
(``train(..., resume=True)``).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "BUILTIN",
    "MLP",
    "Learner",
    "NumpyLearner",
    "SoftmaxRegression",
    "generator_state",
    "resolve_learner",
    "set_generator_state",
]


class Learner(ABC):
    """What the runner needs from a model.

    Attributes
    ----------
    hyperparameters : dict
        JSON values recorded in the model's lineage.
    """

    hyperparameters: dict[str, Any]

    @abstractmethod
    def gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Mean loss over the batch and its gradient for every parameter."""

    @abstractmethod
    def step(self, gradients: dict[str, np.ndarray]) -> None:
        """Update the parameters with (averaged) gradients."""

    @abstractmethod
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class labels for a batch."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The parameters, name → array (saved as the model's tensors)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Replace the parameters (e.g. to fine-tune a saved version)."""

    def training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """Everything training needs to continue exactly: arrays and JSON values.

        The arrays are the parameters and the optimizer state (moments, step
        counts...), stored as datasets in the model's checkpoint; the values
        are JSON (e.g. an RNG state from :func:`generator_state`). No pickle.
        The default, None, means the learner cannot be checkpointed: its runs
        are not resumable.
        """
        return None

    def load_training_state(self, arrays: dict[str, np.ndarray], values: dict[str, Any]) -> None:
        """Restore what :meth:`training_state` returned (raise ValueError if it does not fit)."""
        raise NotImplementedError(f"{type(self).__name__} cannot restore a training state")


def generator_state(generator: np.random.Generator) -> str:
    """A NumPy generator's complete state as a JSON string (128-bit integers stay exact)."""
    return json.dumps(generator.bit_generator.state, sort_keys=True)


def set_generator_state(generator: np.random.Generator, state: str) -> None:
    """Put ``generator`` back in a state from :func:`generator_state`."""
    decoded = json.loads(state)
    if (
        not isinstance(decoded, dict)
        or decoded.get("bit_generator") != type(generator.bit_generator).__name__
    ):
        raise ValueError(f"not a {type(generator.bit_generator).__name__} state: {state[:80]!r}")
    generator.bit_generator.state = decoded


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(len(x), -1)


def _softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    labels = np.asarray(y, dtype=np.int64).reshape(-1)
    n = len(labels)
    loss = float(-np.log(probs[np.arange(n), labels] + 1e-12).mean())
    probs[np.arange(n), labels] -= 1
    return loss, probs / n


class NumpyLearner(Learner):
    """Parameters in a dict of float64 arrays, trained with Adam and L2 weight decay."""

    def __init__(self, params: dict[str, np.ndarray], lr: float, weight_decay: float, **hyper: Any) -> None:
        self.params = params
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.hyperparameters = {"lr": self.lr, "weight_decay": self.weight_decay, **hyper}
        self._m = {k: np.zeros_like(v) for k, v in params.items()}
        self._v = {k: np.zeros_like(v) for k, v in params.items()}
        self._t = 0

    def step(self, gradients: dict[str, np.ndarray]) -> None:
        beta1, beta2 = 0.9, 0.999
        self._t += 1
        for name, grad in gradients.items():
            if name.startswith("w"):
                grad = grad + self.weight_decay * self.params[name]
            self._m[name] = beta1 * self._m[name] + (1 - beta1) * grad
            self._v[name] = beta2 * self._v[name] + (1 - beta2) * grad * grad
            m_hat = self._m[name] / (1 - beta1**self._t)
            v_hat = self._v[name] / (1 - beta2**self._t)
            self.params[name] -= self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.logits(_flat(x)).argmax(axis=1)

    @abstractmethod
    def logits(self, x: np.ndarray) -> np.ndarray:
        """Class scores for a flattened batch."""

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.params = self._checked(state, self.params)

    @staticmethod
    def _checked(state: dict[str, np.ndarray], like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Float64 copies of ``state``, which must have the names and shapes of ``like``."""
        if set(state) != set(like):
            raise ValueError(f"expected tensors {sorted(like)}, got {sorted(state)}")
        for name, value in state.items():
            if np.shape(value) != like[name].shape:
                raise ValueError(f"tensor {name!r} has shape {np.shape(value)}, expected {like[name].shape}")
        return {name: np.array(state[name], dtype=np.float64) for name in like}

    def training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Parameters and Adam moments as arrays, the Adam step count as a value."""
        arrays = {}
        for prefix, group in (("param", self.params), ("adam_m", self._m), ("adam_v", self._v)):
            arrays.update({f"{prefix}.{name}": value.copy() for name, value in group.items()})
        return arrays, {"adam_step": self._t}

    def load_training_state(self, arrays: dict[str, np.ndarray], values: dict[str, Any]) -> None:
        groups: dict[str, dict[str, np.ndarray]] = {"param": {}, "adam_m": {}, "adam_v": {}}
        for key, value in arrays.items():
            prefix, _, name = key.partition(".")
            if prefix not in groups:
                raise ValueError(f"unexpected array {key!r} in a training state")
            groups[prefix][name] = value
        step = values.get("adam_step")
        if set(values) != {"adam_step"} or isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"expected values {{'adam_step': int >= 0}}, got {values!r}")
        params = self._checked(groups["param"], self.params)
        m, v = self._checked(groups["adam_m"], self.params), self._checked(groups["adam_v"], self.params)
        self.params, self._m, self._v, self._t = params, m, v, step


class SoftmaxRegression(NumpyLearner):
    """Multinomial logistic regression: ``softmax(x @ w + b)``."""

    def __init__(
        self, n_features: int, n_classes: int, seed: int = 0, lr: float = 0.01, weight_decay: float = 1e-4
    ) -> None:
        rng = np.random.default_rng(seed)
        params = {"w": rng.normal(0, 0.01, (n_features, n_classes)), "b": np.zeros(n_classes)}
        super().__init__(params, lr, weight_decay, learner="softmax", seed=seed)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.params["w"] + self.params["b"]

    def gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        x = _flat(x)
        loss, d_logits = _softmax_cross_entropy(self.logits(x), y)
        return loss, {"w": x.T @ d_logits, "b": d_logits.sum(axis=0)}


class MLP(NumpyLearner):
    """One hidden ReLU layer: ``softmax(relu(x @ w1 + b1) @ w2 + b2)``, He-initialised."""

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        seed: int = 0,
        hidden: int = 64,
        lr: float = 0.003,
        weight_decay: float = 1e-4,
    ) -> None:
        rng = np.random.default_rng(seed)
        params = {
            "w1": rng.normal(0, np.sqrt(2 / n_features), (n_features, hidden)),
            "b1": np.zeros(hidden),
            "w2": rng.normal(0, np.sqrt(2 / hidden), (hidden, n_classes)),
            "b2": np.zeros(n_classes),
        }
        super().__init__(params, lr, weight_decay, learner="mlp", seed=seed, hidden=int(hidden))

    def _hidden(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ self.params["w1"] + self.params["b1"], 0)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._hidden(x) @ self.params["w2"] + self.params["b2"]

    def gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        x = _flat(x)
        h = self._hidden(x)
        loss, d_logits = _softmax_cross_entropy(h @ self.params["w2"] + self.params["b2"], y)
        d_h = (d_logits @ self.params["w2"].T) * (h > 0)
        return loss, {
            "w1": x.T @ d_h,
            "b1": d_h.sum(axis=0),
            "w2": h.T @ d_logits,
            "b2": d_logits.sum(axis=0),
        }


class TorchLearner(Learner):
    """Any ``torch.nn.Module`` classifier, trained with Adam on the CPU."""

    def __init__(self, module: Any, lr: float = 0.003, **hyper: Any) -> None:
        import torch

        self.torch, self.module = torch, module
        self.optimizer = torch.optim.Adam(module.parameters(), lr=lr)
        self.hyperparameters = {"lr": float(lr), "framework": f"torch {torch.__version__}", **hyper}

    def _tensor(self, x: np.ndarray) -> Any:
        return self.torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(len(x), -1))

    def gradients(self, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        torch = self.torch
        self.module.train()
        self.optimizer.zero_grad()
        labels = torch.from_numpy(np.asarray(y, dtype=np.int64).reshape(-1))
        loss = torch.nn.functional.cross_entropy(self.module(self._tensor(x)), labels)
        loss.backward()
        grads = {n: p.grad.detach().numpy().astype(np.float64) for n, p in self.module.named_parameters()}
        return float(loss.detach()), grads

    def step(self, gradients: dict[str, np.ndarray]) -> None:
        for name, param in self.module.named_parameters():
            param.grad = self.torch.from_numpy(np.asarray(gradients[name], dtype=np.float32))
        self.optimizer.step()

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.module.eval()
        with self.torch.no_grad():
            return self.module(self._tensor(x)).argmax(dim=1).numpy()

    def state_dict(self) -> dict[str, Any]:
        return dict(self.module.state_dict())

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.module.load_state_dict({k: self.torch.from_numpy(np.asarray(v)) for k, v in state.items()})

    def training_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The module's state, the Adam state of every parameter and torch's CPU RNG state, as arrays."""
        arrays = {f"param.{k}": v.detach().cpu().numpy().copy() for k, v in self.module.state_dict().items()}
        for index, state in self.optimizer.state_dict()["state"].items():
            arrays.update({f"adam.{index}.{k}": v.detach().cpu().numpy().copy() for k, v in state.items()})
        arrays["rng"] = self.torch.get_rng_state().numpy().copy()
        return arrays, {"optimizer": "adam"}

    def load_training_state(self, arrays: dict[str, np.ndarray], values: dict[str, Any]) -> None:
        if values != {"optimizer": "adam"}:
            raise ValueError(f"expected values {{'optimizer': 'adam'}}, got {values!r}")
        torch = self.torch
        params: dict[str, Any] = {}
        optimizer_state: dict[int, dict[str, Any]] = {}
        rng = None
        for key, value in arrays.items():
            kind, _, rest = key.partition(".")
            index, _, name = rest.partition(".")
            if kind == "param" and rest:
                params[rest] = torch.from_numpy(np.array(value))
            elif kind == "adam" and index.isdigit() and name:
                optimizer_state.setdefault(int(index), {})[name] = torch.from_numpy(np.array(value))
            elif key == "rng" and value.dtype == np.uint8 and value.ndim == 1:
                rng = torch.from_numpy(np.array(value))
            else:
                raise ValueError(f"unexpected array {key!r} in a training state")
        if rng is None:
            raise ValueError("the training state has no RNG state ('rng')")
        try:
            self.module.load_state_dict(params)
            groups = self.optimizer.state_dict()["param_groups"]
            self.optimizer.load_state_dict({"state": optimizer_state, "param_groups": groups})
            torch.set_rng_state(rng)
        except (RuntimeError, KeyError) as exc:  # torch reports mismatches as RuntimeError
            raise ValueError(f"the training state does not fit this module: {exc}") from exc


def softmax(n_features: int, n_classes: int, seed: int = 0, **hyper: Any) -> SoftmaxRegression:
    """Softmax regression in NumPy (hyper-parameters: lr, weight_decay)."""
    return SoftmaxRegression(n_features, n_classes, seed=seed, **hyper)


def mlp(n_features: int, n_classes: int, seed: int = 0, **hyper: Any) -> MLP:
    """A one-hidden-layer MLP in NumPy (hyper-parameters: hidden, lr, weight_decay)."""
    return MLP(n_features, n_classes, seed=seed, **hyper)


def torch_mlp(
    n_features: int, n_classes: int, seed: int = 0, hidden: int = 64, lr: float = 0.003
) -> TorchLearner:
    """The same MLP in PyTorch (needs ``torch``)."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError("the torch-mlp learner needs PyTorch: pip install torch") from exc
    torch.manual_seed(seed)
    module = torch.nn.Sequential(
        torch.nn.Linear(n_features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_classes)
    )
    return TorchLearner(module, lr=lr, learner="torch-mlp", seed=seed, hidden=int(hidden))


BUILTIN: dict[str, Callable[..., Learner]] = {"softmax": softmax, "mlp": mlp, "torch-mlp": torch_mlp}


def resolve_learner(spec: str | Callable[..., Learner]) -> Callable[..., Learner]:
    """The learner factory named by ``spec``.

    ``spec`` is a built-in name (``softmax``, ``mlp``, ``torch-mlp``),
    ``package.module:function``, ``path/to/file.py:function``, or the factory
    itself. Raises ValueError for a name that does not resolve.
    """
    if callable(spec):
        return spec
    if spec in BUILTIN:
        return BUILTIN[spec]
    where, sep, attr = str(spec).rpartition(":")
    if not sep or not where or not attr:
        raise ValueError(
            f"unknown learner {spec!r}: use one of {sorted(BUILTIN)}, 'package.module:function' "
            "or 'path/to/file.py:function'"
        )
    if where.endswith(".py"):
        if not os.path.isfile(where):
            raise ValueError(f"learner file {where!r} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"dosna_learner_{abs(hash(where))}", where)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"learner file {where!r} cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)  # runs the file, as importing a module does
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ValueError(f"learner module {where!r} cannot be imported: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"{where!r} has no function {attr!r}")
    return factory
