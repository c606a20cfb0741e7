"""Which base model folder each served run speaks on, each base loaded once.

The server is given base folders (``--model_dir``, any number) and runs (``--adapter``). A run
attaches to
1. the given base that is the run's own base (``model_dir`` in its config.yaml), else
2. the one given base of the run's family (read from the run's own base folder, or when that is not
   on this machine from ``model.family`` in its config.yaml), else
3. its own base folder, loaded as one more base (shared by every run naming it), else
4. for an older run that records no family and whose base folder is missing here, the only given
   base (the run's recorded base fingerprint is still checked when it loads).
Without ``--model_dir`` and without runs, ``checkpoints`` is the base.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from indextts.checkpoint_folder.folder import CheckpointFolder
from indextts.checkpoint_folder.layout import DEFAULT_MODEL_DIR
from indextts.errors import ConfigError
from indextts.families import FAMILIES, Family
from indextts.run_folder import RunFolder
from indextts.serving.router import VoiceRouter


@dataclass
class BasePlan:
    """One base folder to load and the runs ({name: run folder}) to add to it."""

    model_dir: Path
    family: Family
    runs: dict[str, Path] = field(default_factory=dict)


def _given_base(plans: list[BasePlan], family: Family) -> BasePlan | None:
    """The one given base of ``family``; ConfigError when several are."""
    same = [plan for plan in plans if plan.family == family]
    if len(same) > 1:
        folders = ", ".join(str(plan.model_dir) for plan in same)
        raise ConfigError(f"Several base folders of {family} are given ({folders}), so a run trained on another "
                          f"{family} folder has no single base to speak on. Give one base per family.")
    return same[0] if same else None


def _recorded_family(run: RunFolder) -> Family | None:
    """The family a run's config.yaml records (``model.family``, written by training); None in older runs."""
    version = (run.config().get("model") or {}).get("family")
    return None if version is None else FAMILIES.get(str(version))


def _base_for_run(name: str, run_dir: Path, plans: list[BasePlan], given: int) -> BasePlan:
    """Where the run ``name`` speaks (the module docstring's rules); appends a new base to ``plans``."""
    run = RunFolder(run_dir)
    own = run.model_dir()
    for plan in plans:
        if plan.model_dir == own:
            return plan
    family = CheckpointFolder(own).family if own.is_dir() else _recorded_family(run)
    plan = None if family is None else _given_base(plans[:given], family)
    if plan is None and own.is_dir():
        plan = BasePlan(own, family)
        plans.append(plan)
    if plan is None and family is None and given == 1:
        plan = plans[0]
    if plan is None:
        wanted = f"an {family} base" if family else "its base"
        raise ConfigError(f"The run '{name}' ({run_dir}) was trained on {own}, which is not on this machine, and "
                          f"no single --model_dir given is {wanted} to speak it on. Pass its base folder with "
                          "--model_dir.")
    return plan


def plan_bases(model_dirs: list[Path], runs: dict[str, Path]) -> list[BasePlan]:
    """The bases to load, given ones first, each with the runs that speak on it."""
    if not model_dirs and not runs:
        model_dirs = [DEFAULT_MODEL_DIR]
    plans: list[BasePlan] = []
    for folder in model_dirs:
        base = CheckpointFolder(folder)
        if all(plan.model_dir != base.root for plan in plans):
            plans.append(BasePlan(base.root, base.family))
    given = len(plans)
    for name, run_dir in runs.items():
        _base_for_run(name, Path(run_dir), plans, given).runs[name] = Path(run_dir)
    return plans


def load_router(plans: list[BasePlan], **kwargs) -> VoiceRouter:
    """Each planned base loaded once with its runs (``kwargs``: IndexTTS.from_pretrained's settings)."""
    from indextts.inference import IndexTTS

    return VoiceRouter([IndexTTS.from_pretrained(plan.model_dir, adapters=plan.runs or None, **kwargs)
                        for plan in plans])
