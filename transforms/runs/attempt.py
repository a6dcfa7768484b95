"""An attempt at a run (docs/lifecycle.md, "Attempt"): `begin` starts one, `load_attempt` reads
its plan back in a later process (an Airflow task), `pinned` gives the settings that read the
definitions and contracts it pinned, `discard` removes what a failed one wrote."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from datetime import date
from pathlib import Path

from transforms.config import Settings
from transforms.contracts.odcs import CONTRACT_SUFFIX
from transforms.engines.registry import DEFAULT_ENGINE, load_engine
from transforms.errors import MissingInputError, RunOrderError
from transforms.language.definitions import SUFFIXES
from transforms.runs.materialize import compile_definitions
from transforms.runs.staging import Staging
from transforms.storage import lake
from transforms.storage.catalog import attempt_files, read_catalog
from transforms.storage.records import Attempt
from transforms.storage.roots import Root

PINNED = {"definitions": SUFFIXES, "contracts": (CONTRACT_SUFFIX,)}
"""The input folders an attempt pins when it begins, and the files of each it copies."""


def _pin_inputs(settings: Settings, staging: Staging) -> dict[str, dict[str, str]]:
    """Copy the definition and contract files into the attempt's staging folder; their hashes
    per folder and file name."""
    hashes: dict[str, dict[str, str]] = {}
    for name, suffixes in PINNED.items():
        source = Path(getattr(settings, name))
        hashes[name] = {}
        for path in sorted(source.iterdir()):
            if path.is_file() and path.name.endswith(suffixes):
                data = path.read_bytes()
                staging.root.write_bytes(f"{staging.inputs}/{name}/{path.name}", data)
                hashes[name][path.name] = hashlib.sha256(data).hexdigest()[:16]
    return hashes


def pinned(settings: Settings, plan: Attempt) -> Settings:
    """`settings` reading the definitions and contracts `begin` pinned for the attempt, so that
    a definition deployed between two of its steps changes nothing it computes or records."""
    if plan.inputs is None:
        return settings
    root = Root(settings.lake, settings.storage_options)
    staged = Staging.of(root, plan).inputs
    local = Path(root.local_path(staged)) if root.is_local else local_copy(plan)
    if not local.is_dir():  # the loaders read local folders: copy them out of the object store
        partial = local.with_name(f"{local.name}.{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        for name, files in plan.inputs.items():
            (partial / name).mkdir(parents=True)
            for file in files:
                (partial / name / file).write_bytes(root.read_bytes(f"{staged}/{name}/{file}"))
        try:
            partial.rename(local)
        except OSError:  # another process of the attempt copied them first
            shutil.rmtree(partial, ignore_errors=True)
    return settings.model_copy(update={name: str(local / name) for name in PINNED})


def local_copy(plan: Attempt) -> Path:
    """Where a process keeps the pinned inputs of an attempt on an object-store lake."""
    return Path(tempfile.gettempdir(), "segments-inputs", f"{plan.day}-{plan.attempt}")


def begin(
    settings: Settings,
    day: date,
    *,
    accept_shrink: bool = False,
    engine: str = DEFAULT_ENGINE,
    full: bool = False,
    reingest: bool = False,
    allowed_later: tuple[date, ...] = (),
) -> Attempt:
    """Start an attempt at run `day`: check the definitions compile and the engine can run, read
    the catalog, refuse if later runs are committed (other than `allowed_later`, which the
    caller reruns next), pin the definitions and contracts, save the plan. Nothing is written
    or claimed before the checks pass."""
    compile_definitions(settings, day)
    load_engine(engine).check(settings)
    root = Root(settings.lake, settings.storage_options)
    catalog = read_catalog(root)
    later = [d for d in catalog.later(day) if d not in allowed_later]
    if later:
        shown = ", ".join(d.isoformat() for d in later)
        raise RunOrderError(
            f"runs after {day} are committed ({shown}): rerunning {day} alone would leave their"
            " enter/exit records inconsistent",
            hint=f"rerun {day} and every later date in order with --rebuild-later",
        )
    attempt = lake.new_attempt()
    staging = Staging(root, day, attempt)
    plan = Attempt(
        day=day,
        attempt=attempt,
        catalog=catalog,
        accept_shrink=accept_shrink,
        engine=engine,
        full=full,
        reingest=reingest,
        inputs=_pin_inputs(settings, staging),
    )
    staging.write(plan)
    return plan


def load_attempt(settings: Settings, day: date, attempt: str) -> Attempt:
    """The plan `begin` saved for attempt `attempt` of run `day`."""
    staging = Staging(Root(settings.lake, settings.storage_options), day, attempt)
    plan = staging.find(Attempt)
    if plan is None:
        raise MissingInputError(
            f"attempt {attempt} of run {day} has no plan at"
            f" {staging.root.url_of(staging.key(Attempt))}: it committed (its staging folder is"
            " removed then) or never started",
            hint="start the run again from its first step",
        )
    return plan


def discard(settings: Settings, plan: Attempt) -> None:
    """Remove what a failed attempt wrote to the lake: its staging folder and its files in the
    run's partitions. Its inbox claims stay: the next attempt takes them over. An attempt that
    committed (and failed after) keeps everything."""
    root = Root(settings.lake, settings.storage_options)
    committed = read_catalog(root).runs.get(plan.day.isoformat())
    if committed == lake.manifest_path(plan.day, plan.attempt):
        return
    root.delete(attempt_files(root, plan.day, plan.attempt))
    root.delete_folder(Staging.of(root, plan).folder)
    shutil.rmtree(local_copy(plan), ignore_errors=True)
