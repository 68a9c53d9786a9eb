"""The package works from a plain wheel install (configs included), run from another folder."""
from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_installs_into_fresh_venv_and_runs_elsewhere(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
        check=True, cwd=tmp_path,
    )
    (wheel,) = wheels.glob("seqarena-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    vpy = venv / "bin" / "python"
    # The fresh venv sees this environment's dependencies (torch, ...) through a .pth file,
    # but not the repository: seqarena itself comes only from the wheel.
    vsite = Path(subprocess.check_output([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip())
    (vsite / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(vsite), str(wheel)], check=True)
    script = textwrap.dedent(
        """
        import pathlib, sys, torch, archs, configs
        from archs import build_mixer, Block, LanguageModel
        repo = pathlib.Path(sys.argv[1]).resolve()
        for mod in (archs, configs):
            assert repo not in pathlib.Path(mod.__file__).resolve().parents, mod.__file__
        y = build_mixer("attention", d_model=64)(torch.randn(2, 9, 64))
        assert y.shape == (2, 9, 64)
        cfg_dir = pathlib.Path(configs.__file__).parent
        assert (cfg_dir / "arch" / "attention.yaml").is_file()
        from train import compose_config
        cfg = compose_config(["arch=mamba", "task=passkey"])
        assert cfg.arch.name == "mamba" and cfg.task.name == "passkey"
        from eval.config import compose
        assert compose("eval/compare", ["compare=tiny"]).compare.name == "tiny"
        print("ok", sorted(p.name for p in cfg_dir.iterdir() if p.is_dir()))
        """
    )
    # -I: isolated mode ignores PYTHONPATH and the editable install's working-directory paths
    out = subprocess.run([str(vpy), "-I", "-c", script, str(REPO)], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok") and "arch" in out.stdout
