"""Hidden layers of a PyTorch model: the hooked modules, their outputs as rows, and where each
layer's snapshot and meter go (``layers=`` of capture, measure and the Lightning callback)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import UsageError
from .hook import resolve_module

__all__ = [
    "POOLS",
    "LayerHooks",
    "resolve_layers",
    "layer_snapshot",
    "open_layer_snapshots",
    "layer_meta",
    "layer_rows",
    "layer_meters",
    "check_names",
    "merge_logged",
]


#: how :class:`LayerHooks` turns a module's output into one row per sample
POOLS = (None, "flatten", "avg", "max")


def resolve_layers(model: Any, layers: Any) -> list[tuple[str, Any]]:
    """``[(name, module), ...]`` of ``layers`` in the order given (input side first).

    ``layers`` is a module name, a module, a sequence of either, or a mapping name -> module
    (or name -> module name); a name is its key in ``model.named_modules()`` unless the
    mapping gives one. Names are unique and not ``"penultimate"`` (the classifier's input).
    """
    if layers is None:
        return []
    if isinstance(layers, str) or hasattr(layers, "register_forward_hook"):
        layers = [layers]
    if isinstance(layers, Mapping):
        items = []
        for key, value in layers.items():
            module, _ = resolve_module(model, value)
            items.append((str(key), module))
    else:
        items = []
        for value in layers:
            module, name = resolve_module(model, value)
            items.append((name, module))
    if not items:
        raise UsageError("layers= is empty: give module names, modules or a mapping")
    names = [name for name, _ in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"layers: the name(s) {dup} are given twice")
    check_names([*names, "penultimate"], "layers", reserved="penultimate")
    return items


def check_names(names: list[str], what: str, reserved: str | None = None) -> None:
    """Refuse names (layers, splits) that show as another or as nothing: blank, holding a
    control character (a newline splits every table row, log line and CSV header), or two
    that look the same (the rule of class names,
    :func:`~ncinspect.io.class_names.shown_key`: ``blk`` and ``blk`` + a zero-width space,
    ``penultimate`` + a blank beside the classifier's input). Each would give two rows,
    results or logged keys of one shown name, and a dump the readers refuse."""
    from ..io.class_names import shown_key
    from ..text import clip

    first: dict[str, str] = {}
    seen: set[str] = set()
    for name in names:
        if not shown_key(name):
            raise UsageError(f"{what}: a name is blank ({ascii(name)}); give it a name")
        bad = next((ch for ch in name if ch < " " or "\x7f" <= ch < "\xa0"), None)
        if bad is not None:
            raise UsageError(
                f"{what}: the name {clip(ascii(name))} holds a control character "
                f"({bad!r}); give a mapping name -> module with another name"
            )
        if name in seen:
            raise UsageError(f"{what}: the name {clip(ascii(name))} is given twice")
        seen.add(name)
        other = first.setdefault(shown_key(name), name)
        if other != name:
            if reserved in (name, other):
                raise UsageError(
                    f"{what}: {clip(ascii(other if other != reserved else name))} looks like "
                    f"{reserved!r}, which names the classifier's input (always measured); "
                    "give that layer another name"
                )
            raise UsageError(
                f"{what}: the names {clip(ascii(other))} and {clip(ascii(name))} look the "
                "same (they differ only in invisible characters, blanks around them or "
                "Unicode normalisation); give each its own name"
            )


def merge_logged(values: dict[str, float], new: dict[str, float], source: str) -> None:
    """Add ``new`` logged values to ``values``, refusing a key that is there already or
    looks the same: two measurements of one step would log one name, and a logger keeps
    one value silently (the split ``a/b`` and the layer ``b`` of split ``a`` both log
    ``nc/a/b/nc1``). ``source`` names where ``new`` comes from."""
    from ..io.class_names import shown_key
    from ..text import clip

    shown = {shown_key(k): k for k in values}
    for key in new:
        other = shown.get(shown_key(key))
        if other is not None:
            raise UsageError(
                f"the logged name {clip(ascii(key))} ({source}) is "
                f"{'also' if other == key else 'like ' + clip(ascii(other)) + ','} the name of "
                "another measurement of this step: rename a split or layer (names with '/' "
                "can meet another split's layer)"
            )
        shown[shown_key(key)] = key
    values.update(new)


class LayerHooks:
    """Forward hooks on several modules: each one's output, one row per sample.

    Parameters
    ----------
    layers : list of (name, module)
        From :func:`resolve_layers`.
    pool : {None, "flatten", "avg", "max"}
        How an output of more than two dimensions becomes rows: ``None``/``"flatten"`` keeps
        every value (``(N, C, H, W)`` -> ``(N, C*H*W)``); ``"avg"`` / ``"max"`` pool over every
        dimension after the second (a CNN's spatial map: ``(N, C, H, W)`` -> ``(N, C)``, the
        global average pooling of a ResNet head). A 2-D output is kept as it is.

    Notes
    -----
    A tuple output (an RNN's ``(output, state)``) gives its first element. Each module must
    be called once per forward of the model; :meth:`pop` returns the rows in the order of
    ``layers`` and raises, naming the module, when one was not called (or more than once).
    """

    def __init__(self, layers: list[tuple[str, Any]], pool: str | None = None):
        if pool not in POOLS:
            raise UsageError(f"pool must be one of {POOLS}, got {pool!r}")
        self.layers, self.pool = layers, pool
        self._handles: list[Any] = []
        self._got: dict[str, list[Any]] = {name: [] for name, _ in layers}

    def attach(self) -> LayerHooks:
        if not self._handles:
            for name, module in self.layers:
                self._handles.append(module.register_forward_hook(self._hook_for(name)))
        return self

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> LayerHooks:
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.remove()

    def _hook_for(self, name: str):
        def hook(module, inputs, output) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            self._got[name].append(self.rows(out.detach()))

        return hook

    def rows(self, out: Any) -> Any:
        """``out`` as (samples, values): pooled or flattened after the first dimension."""
        if out.ndim == 2:
            return out
        if out.ndim < 2:
            return out.reshape(-1, 1)
        if self.pool == "avg":
            return out.mean(dim=tuple(range(2, out.ndim)))
        if self.pool == "max":
            return out.amax(dim=tuple(range(2, out.ndim)))
        return out.reshape(out.shape[0], -1)

    def pop(self) -> list[Any]:
        """The rows each layer produced since the last pop, in the order of ``layers``."""
        out = []
        for name, _ in self.layers:
            got = self._got[name]
            if len(got) != 1:
                calls = len(got)
                self.clear()
                raise UsageError(
                    f"the layer {name!r} was called {calls} time(s) in one forward of the "
                    "model; hook modules that run once per forward"
                )
            out.append(got[0])
        self.clear()
        return out

    def clear(self) -> None:
        for got in self._got.values():
            got.clear()


def layer_snapshot(snapshot: str, k: int) -> str:
    """The group of the ``k``-th hooked layer (1-based) under ``snapshot``: ``<snapshot>/layer_<k>``
    (spec/dump-format.md: the penultimate layer, ``snapshot`` itself, has no ``layer``)."""
    return f"{snapshot.rstrip('/')}/layer_{k}"


def layer_meta(name: str, k: int) -> dict[str, Any]:
    """The metadata of the ``k``-th hooked layer's snapshot: ``layer = "layer_<k>"``, its
    position ``layer_index = k`` and the hooked ``module``'s name."""
    return {"layer": f"layer_{k}", "layer_index": k, "module": name}


def open_layer_snapshots(writer, hooked, snapshot: str, append: bool, replace: bool, meta):
    """The snapshot writer of each hooked layer under ``snapshot``, with ``meta`` and the
    layer's own metadata."""
    return [
        writer.snapshot(
            layer_snapshot(snapshot, k),
            append=append,
            replace=replace,
            **{**meta, **layer_meta(layer_name, k)},
        )
        for k, (layer_name, _) in enumerate(hooked, 1)
    ]


def layer_rows(layer_hooks: LayerHooks, n: int, i: int) -> list[Any]:
    """Each hooked layer's rows of batch ``i``, checked to be one row per sample."""
    rows = layer_hooks.pop() if layer_hooks.layers else []
    for (layer_name, _), r in zip(layer_hooks.layers, rows, strict=True):
        if r.shape[0] != n:
            raise UsageError(
                f"batch {i}: the layer {layer_name!r} gave {r.shape[0]} rows but the classifier "
                f"saw {n}; hook layers whose output has one row per sample (pool= reduces "
                "the other dimensions)"
            )
    return rows


def layer_meters(meter, hooked, options: dict[str, Any]) -> list[Any]:
    """One :class:`~ncinspect.Meter` per hooked layer: no classifier, the classes of
    ``meter``, the same settings; with a dump, writing ``<snapshot>/layer_<k>``."""
    from ..meter.meter import Meter

    shared = {
        key: options[key]
        for key in ("center", "per_class", "min_class_count", "precision", "ignore_index")
        if key in options
    }
    out = []
    for k, (layer_name, _) in enumerate(hooked, 1):
        dump_args = {}
        if options.get("dump") is not None:
            snapshot = options.get("snapshot", "/")
            dump_args = {
                "dump": options["dump"],
                "snapshot": layer_snapshot(snapshot, k),
                "dump_meta": {**(options.get("dump_meta") or {}), **layer_meta(layer_name, k)},
            }
        out.append(Meter(n_classes=meter.n_classes, **shared, **dump_args))
    return out
