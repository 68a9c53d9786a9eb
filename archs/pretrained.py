"""Save and load a LanguageModel: ``config.json`` (every constructor argument) + ``model.safetensors``.

    model.save_pretrained("out/my_model")
    model = LanguageModel.from_pretrained("out/my_model")

The folder layout follows HF's: safetensors holds the tensors (no pickle, nothing executes on load),
the json the arguments to rebuild the model. A tied head is stored once (as ``embed.weight``).
Each file is written to a temp file in the folder and moved into place with ``os.replace``, so a
reader sees either the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "seqarena.LanguageModel"
FORMAT_VERSION = 1


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temp file in ``path``'s folder, then move it onto ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _jsonable(obj):
    """Mappings and sequences that json does not know (e.g. OmegaConf containers from a Hydra config)."""
    if hasattr(obj, "items"):
        return dict(obj.items())
    if hasattr(obj, "__iter__") and not isinstance(obj, (str, bytes)):
        return list(obj)
    raise TypeError(f"save_pretrained: config value {obj!r} ({type(obj).__name__}) cannot be written as JSON")


def save_pretrained(model, directory) -> None:
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.tie_embeddings:
        state.pop("head.weight", None)  # the same tensor as embed.weight
    dtype = str(model.embed.weight.dtype).removeprefix("torch.")
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "dtype": dtype, "model": model.config}
    text = json.dumps(config, indent=2, sort_keys=True, default=_jsonable)
    _atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))

    def write_json(tmp):
        with open(tmp, "w") as f:
            f.write(text + "\n")

    _atomic_write(directory / CONFIG_NAME, write_json)


def read_config(directory) -> dict:
    """The ``config.json`` of a save_pretrained folder, checked."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise FileNotFoundError(f"from_pretrained: {str(directory)!r} is not a folder (expected one written by save_pretrained)")
    if not path.is_file() or not (directory / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"from_pretrained: {str(directory)!r} must hold {CONFIG_NAME} and {WEIGHTS_NAME} "
                                f"(written by LanguageModel.save_pretrained); found {sorted(p.name for p in directory.iterdir())}")
    with open(path) as f:
        config = json.load(f)
    if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"from_pretrained: {path} is not a {FORMAT} v{FORMAT_VERSION} config "
                         f"(format={config.get('format')!r}, version={config.get('format_version')!r})")
    return config


def from_pretrained(directory, device=None):
    from safetensors.torch import load_file

    from .model import LanguageModel

    config = read_config(directory)
    dtype = getattr(torch, config["dtype"], None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"from_pretrained: unknown dtype {config['dtype']!r} in {Path(directory) / CONFIG_NAME}")
    model = LanguageModel(**config["model"]).to(dtype)
    state = load_file(str(Path(directory) / WEIGHTS_NAME))
    expected = set(model.state_dict()) - ({"head.weight"} if model.tie_embeddings else set())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"from_pretrained: {Path(directory) / WEIGHTS_NAME} does not fit its config: "
                         f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}")
    model.load_state_dict(state, strict=False)
    return model.to(device) if device is not None else model
