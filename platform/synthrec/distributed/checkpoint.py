"""The one checkpoint format of every Ray Train run: tensors in safetensors, the rest in JSON.

A trainer's state is a tree of dicts, lists and tuples whose leaves are tensors or plain JSON
values: model and optimizer state dicts, the epoch, the metric history. `save_state` writes
every tensor to `state.safetensors` under its path in the tree (`task/generator/net.0.weight`,
`task/opt_g/state/0/exp_avg`) and the tree itself, each tensor replaced by a reference to its
name, to `state.json`. Loading runs no code (no pickle, no torch.load), and a checkpoint reads
back on any device.

JSON cannot tell a tuple from a list or keep a dict's integer keys (an optimizer's state is
keyed by parameter index), so containers are written as one-key objects:
`{"dict": [[key, value], ...]}`, `{"list": [...]}`, `{"tuple": [...]}`, `{"tensor": name}`;
strings, numbers, booleans and null stay as they are. No torch.distributed or Ray here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from synthrec.errors import ModelError

TENSORS = "state.safetensors"
TREE = "state.json"
FORMAT = "synthrec-train-checkpoint"
VERSION = 1


def save_state(directory: str | Path, state: Mapping[str, Any]) -> None:
    """Write `state` (a tree of tensors and JSON values) as state.safetensors + state.json."""
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, "", tensors)
    # copies: safetensors refuses tensors that share memory (views, tied weights)
    cpu = {
        k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
        for k, v in tensors.items()
    }
    save_file(cpu, _path(directory, TENSORS))
    text = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree})
    Path(directory, TREE).write_text(text)


def load_state(directory: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The tree `save_state` wrote, its tensors on `device`."""
    from safetensors.torch import load_file

    where = Path(directory)
    if not (where / TREE).exists() or not (where / TENSORS).exists():
        found = ", ".join(sorted(p.name for p in where.iterdir())) if where.is_dir() else "nothing"
        raise ModelError(
            f"checkpoint {where} lacks {TREE} and {TENSORS} (it holds {found}): it was written "
            "by an older synthrec (torch.save) and cannot be resumed; start a new run under "
            "another --run-name"
        )
    doc = json.loads((where / TREE).read_text())
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ModelError(
            f"checkpoint {where}: {TREE} is format {doc.get('format')!r} version "
            f"{doc.get('version')!r}, this synthrec reads {FORMAT!r} version {VERSION}; "
            "resume it with the synthrec that wrote it or start a new run"
        )
    tensors = load_file(_path(where, TENSORS), device=str(device))
    return _decode(doc["tree"], tensors)


def _path(directory: str | Path, name: str) -> str:
    return str(Path(directory, name))


def _encode(node: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, torch.Tensor):
        name = path or "tensor"
        while name in tensors:  # a key holding "/" can spell the same path as nested keys
            name += "~"
        tensors[name] = node
        return {"tensor": name}
    if isinstance(node, Mapping):
        for key in node:
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"checkpoint key {key!r} at {path or '/'} must be a str or int")
        return {"dict": [[k, _encode(v, _join(path, k), tensors)] for k, v in node.items()]}
    if isinstance(node, (list, tuple)):
        kind = "tuple" if isinstance(node, tuple) else "list"
        return {kind: [_encode(v, _join(path, i), tensors) for i, v in enumerate(node)]}
    if node is None or isinstance(node, (str, int, float, bool)):
        return node
    raise TypeError(
        f"checkpoint value at {path or '/'} is a {type(node).__name__}; "
        "only tensors, dicts, lists, tuples, str, int, float, bool and None are stored"
    )


def _decode(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if not isinstance(node, dict):
        return node
    ((kind, body),) = node.items()
    if kind == "tensor":
        return tensors[body]
    if kind == "dict":
        return {k: _decode(v, tensors) for k, v in body}
    items = [_decode(v, tensors) for v in body]
    return tuple(items) if kind == "tuple" else items


def _join(path: str, key: str | int) -> str:
    return f"{path}/{key}" if path else str(key)
