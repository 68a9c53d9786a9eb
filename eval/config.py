"""Locating and composing the Hydra configs in ``configs/`` (works from a wheel too)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf


def config_dir() -> Path:
    import configs

    return Path(configs.__file__).resolve().parent


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with Hydra ``key=value`` overrides.

    The Hydra context is entered and left here, so the trainer can compose its own
    configs afterwards.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # e.g. called from inside a Hydra app
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def load_group(group: str, name: str) -> DictConfig:
    """``configs/<group>/<name>.yaml`` as a DictConfig; a missing one lists the known names."""
    path = config_dir() / group / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
        raise FileNotFoundError(f"no config {group}/{name}.yaml in {config_dir()}; known {group} configs: {', '.join(known)}")
    return OmegaConf.load(path)


def resolve_archs(spec) -> list[str]:
    """``"all"`` -> every registered mixer; a name or list of names of arch configs
    (``configs/arch/*.yaml``: every mixer, plus hybrids and variants) -> checked list. ``all``
    may stand inside a list too: ``[all, attention_conv]`` is every mixer plus that config."""
    from archs import mixer_names

    if spec is None or spec == "all":
        return mixer_names()
    known = sorted(p.stem for p in (config_dir() / "arch").glob("*.yaml"))
    names = [spec] if isinstance(spec, str) else [str(s) for s in spec]
    if not names:
        raise ValueError("archs: expected 'all' or a non-empty list of arch config names")
    names = [m for n in names for m in (mixer_names() if n == "all" else [n])]
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"archs: unknown {bad}; known arch configs: {', '.join(known)}")
    return list(dict.fromkeys(names))  # in order, each once
