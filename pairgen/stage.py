"""One lifecycle for every stage: config, manifest, units of work, summary, exit status.

A stage (``render``, ``filter``) is a :class:`Stage` subclass: its config, the
folder it writes, its unit-of-work function and a few hooks. :meth:`Stage.run`
does the rest, the same way for every stage:

0. **one run per folder**: the folder's lock is held throughout
   (:mod:`manifests.lock`, its files in ``OUT/_pairgen``: the data folder
   holds Parquet only, :mod:`manifests.layout`); a second run into it fails
   at once, naming the first;
1. **identity**: the config (and what it depends on, e.g. the views' config
   hash) is hashed (:func:`manifests.config.config_hash`);
2. **manifest**: ``OUT/<folder>.manifest.json`` is read through the typed
   manifest (:mod:`manifests.manifest`; a folder of pairgen 0.1, with
   ``OUT/<folder>/manifest.json``, is read too and migrated: :meth:`Stage.migrate`
   moves its other state out of the data folder, and the old manifest is
   removed once the new one is written, at the end). Same hash: its entries are kept and
   finished units are skipped. Another hash: :class:`ConfigMismatch` naming
   what changed, unless ``overwrite``, which removes the outputs the old
   manifest lists (inside the folder only) and starts afresh;
3. leftovers of interrupted atomic writes are removed, and the manifest is
   written once before any work (an unwritable folder fails at once, with one
   message);
4. **units**: :meth:`Stage.plan` says which units to run and which are
   decided already (skipped, or failed before any work); the runnable ones
   go through the distributor (:mod:`pairgen.distribute`, Ray or in-process)
   as ``work(task, **common)``, a pure function that never raises and returns
   the stage's :class:`UnitResult` dataclass. Each result is recorded in the
   manifest as it arrives (so a run killed at any moment resumes), counted
   in the summary and shown by the progress;
5. :meth:`Stage.finish` (the filter writes its shards there), then the
   manifest is written a last time, marked ``complete`` only when every
   unit succeeded (the same command again retries exactly the failed ones),
   then :meth:`Stage.publish` (the dataset card, ``OUT/README.md``). A
   unit that fails on a full disk (:class:`~manifests.io.DiskFull`) stops
   the run at once, with that one message and exit status 1: every later
   unit would fail the same way;
6. the :class:`StageSummary` gives the summary line; :func:`report` prints it
   with the first failures, and the exit status is 1 when a unit failed.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TextIO

from manifests.commands import EXIT_FAILED, EXIT_OK, shorten
from manifests.config import config_changes, config_hash
from manifests import store
from manifests.io import DiskFull, OutputError, output_error, remove_stale_temporaries
from manifests.layout import state_dir, temporaries_dir
from manifests.lock import LOCK_NAME, FolderBusy, folder_lock
from pairgen.distribute import TaskTimeout
from manifests.manifest import ManifestError, StageManifest

__all__ = ["ConfigMismatch", "Stage", "StageSummary", "UnitResult", "report", "run_unit"]

log = logging.getLogger(__name__)

SHOWN_FAILURES = 10  # failures printed at the end of a run; the manifest has them all


class ConfigMismatch(ValueError):
    """An output folder holds results of another config."""


@dataclass
class UnitResult:
    """What one unit of work (a scene) returns; each stage subclasses it with its statistics.

    ``status`` is ``ok``, ``skipped`` (complete from an earlier run),
    ``failed`` (then ``reason`` says why, naming the file) or ``absent`` (its
    input is missing: the earlier stage failed it; ``reason`` says why).
    """

    status: str = "failed"
    reason: str | None = None
    seconds: float = 0.0
    disk_full: bool = False  # failed on a full disk: the run stops, every later scene would fail the same way

    #: fields kept out of the manifest entry (large, or only for the driver)
    PRIVATE: ClassVar[tuple[str, ...]] = ()

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "skipped")

    def entry(self) -> dict:
        """The manifest entry of this result: every public field that is set."""
        private = (*self.PRIVATE, "disk_full")
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and k not in private}


@dataclass
class StageSummary:
    """Counts of one run of a stage; ``counts`` holds the stage's own (views, pairs, shards)."""

    ok: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    up_to_date: bool = False
    failures: dict[str, str] = field(default_factory=dict)  # unit key -> reason
    counts: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "skipped": self.skipped, "failed": self.failed, "seconds": round(self.seconds, 3),
                **self.counts, "failures": self.failures}  # fmt: skip


Distributor = Callable[..., None]


class Stage(abc.ABC):
    """A pipeline stage run by :meth:`run`. Subclasses fill in the class attributes and hooks.

    Parameters
    ----------
    out_dir : path
        The pipeline's working folder; the stage writes ``out_dir/<folder>``.
    config
        The stage's config dataclass (``to_dict()`` is hashed).
    distributor : callable
        ``distributor(fn, tasks, on_result, on_error, common)``.
    overwrite : bool
        Replace the outputs of another config instead of refusing.
    progress : callable, optional
        ``progress(total, desc, unit)`` -> an object with ``update``,
        ``set_postfix`` and ``close`` (:class:`manifests.progress.Progress`).
    """

    name: ClassVar[str]  # "render"
    folder_name: ClassVar[str]  # "views": the folder under OUT it writes
    manifest_cls: ClassVar[type[StageManifest]]
    result_cls: ClassVar[type[UnitResult]]
    what: ClassVar[str]  # "views rendered" / "pairs": what the folder holds, for messages
    progress_desc: ClassVar[str]  # "rendering"

    def __init__(self, out_dir: str | Path, config, *, distributor: Distributor, overwrite: bool = False,
                 progress: Callable[[int, str, str], Any] | None = None) -> None:  # fmt: skip
        self.out_dir = Path(out_dir)
        self.folder = self.out_dir / self.folder_name
        self.config = config
        self.distributor = distributor
        self.overwrite = overwrite
        self.progress = progress
        self.summary = StageSummary()
        self.manifest: StageManifest | None = None

    # -- what a stage says -----------------------------------------------------------

    def identity(self) -> dict:
        """What decides the outputs (hashed); by default the config alone."""
        return self.config.to_dict()

    @staticmethod
    @abc.abstractmethod
    def work(task, **common) -> UnitResult:
        """The unit of work: pure, never raises (a module-level function, shipped to Ray workers)."""

    @abc.abstractmethod
    def key(self, task) -> str:
        """The unit's key in the manifest (``dataset/scene_id``)."""

    @abc.abstractmethod
    def plan(self) -> tuple[list, list[tuple[Any, UnitResult]]]:
        """``(tasks to run, [(task, result decided without running it)])``."""

    def common(self) -> dict:
        """The keyword arguments every task shares (shipped to the workers once)."""
        return {}

    def describe(self, task) -> dict:
        """Fields of the manifest entry that come from the task rather than the result."""
        return {}

    def outputs(self, manifest: StageManifest) -> Iterable[str]:
        """Files (relative to the folder) an old manifest lists, removed by ``overwrite``."""
        return [e["file"] for e in manifest.scenes.values() if e.get("file")]

    def up_to_date(self, manifest: StageManifest) -> bool:
        """True when the folder already holds this config's complete outputs (nothing to do)."""
        return False

    def on_result(self, task, result: UnitResult) -> None:
        """Called in the driver as each unit's result arrives (after it is recorded)."""

    def postfix(self) -> dict:
        """Figures shown beside the progress bar."""
        return {"failed": self.summary.failed}

    def finish(self, manifest: StageManifest) -> None:
        """After every unit: the stage's last work (shards), filling ``manifest.body``."""

    def migrate(self, manifest: StageManifest) -> None:
        """Move what pairgen 0.1 kept in the data folder (besides its manifest) out of it, before any work.

        Here: the lock files a killed run of pairgen 0.1 left (``.lock``,
        ``.lock-holder.json``), when no live process holds them.
        """
        old = self.folder / LOCK_NAME  # pairgen 0.1 locked a data folder inside it
        if not old.is_file():
            return
        try:
            with folder_lock(self.folder):  # the old place's lock: taken over unless live, both files removed after
                pass
        except FolderBusy:
            log.warning("%s: held by a run of an older pairgen; left alone", old)
        except OutputError:
            pass

    def publish(self) -> None:
        """After the manifest's last write (also when up to date): the files that describe the outputs (the card)."""

    @property
    def temporaries(self) -> Path:
        """Where the stage's atomic writes into its data folder put their temporaries (``OUT/_pairgen/<folder>.tmp``)."""
        return temporaries_dir(self.folder)

    @abc.abstractmethod
    def line(self, summary: StageSummary) -> str:
        """The summary line."""

    # -- the lifecycle ----------------------------------------------------------------

    def open_manifest(self, config_hash_: str) -> StageManifest:
        """The manifest to continue, or a new one; refuses or clears another config's folder.

        A manifest that cannot be read (not JSON, a field of the wrong type)
        is refused, naming it, unless ``overwrite``, which replaces it: the
        files it listed are unknown, so they stay, and each is checked again
        (rewritten or reused) as the run reaches it.
        """
        cls = self.manifest_cls
        old = None
        if cls.exists(self.folder):
            try:
                old = cls.read(self.folder)
            except ManifestError as e:
                if not self.overwrite:
                    raise ManifestError(f"{e}; pass --overwrite to replace it") from None
                log.warning("%s; replacing it (--overwrite)", e)
                store.remove(cls.find(self.folder))
        if old is not None:
            if old.config_hash == config_hash_:
                return old
            changes = config_changes(old.body.get("identity", old.config), self.identity()) or [
                "the inputs were made with another config"
            ]
            if not self.overwrite:
                shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
                raise ConfigMismatch(
                    f"{old.path}: this folder holds {self.what} with another config ({shown}). "
                    "Use another --out, or pass --overwrite to replace them."
                )
            log.warning("%s: overwriting the outputs of config %s", old.path, old.config_hash)
            for relative in self.outputs(old):
                try:
                    store.remove(old.file(relative))
                except OutputError as e:
                    log.warning("ignoring %s", e)
            store.remove(old.path)
        config, identity = self.config.to_dict(), self.identity()
        return cls(self.folder, config_hash_, config, body={} if identity == config else {"identity": identity})

    def run(self) -> StageSummary:
        """Run the stage to the end; see the module docstring.

        Raises
        ------
        ConfigMismatch
            The folder holds another config's outputs and ``overwrite`` is False.
        FolderBusy
            Another live run writes the folder (:func:`manifests.lock.folder_lock`).
        OutputError
            The inputs are missing, or the folder cannot be written.
        """
        with folder_lock(self.folder, at=state_dir(self.folder)):
            return self._run()

    def _settle(self, manifest: StageManifest) -> None:
        """The manifest is written: pairgen 0.1's copy goes, then the card is brought up to date."""
        if manifest.remove_legacy():
            log.info("%s: moved to %s (pairgen 0.1's place removed)", self.folder, manifest.path)
        with contextlib.suppress(OSError):  # empty once every write is renamed (only this folder's lock holder uses it)
            self.temporaries.rmdir()
        self.publish()

    def _run(self) -> StageSummary:
        summary = self.summary
        start = time.perf_counter()
        manifest = self.manifest = self.open_manifest(config_hash(self.identity()))
        self.migrate(manifest)
        if self.up_to_date(manifest):
            summary.up_to_date = True
            if manifest.legacy:
                manifest.write()
            self._settle(manifest)
            return summary
        stale = remove_stale_temporaries(self.temporaries) + remove_stale_temporaries(self.folder)
        stale += store.abort_uploads(self.folder)  # a store's counterpart: a killed run's unfinished uploads
        if stale:
            log.info("removed %d unfinished temporary file(s) or upload(s) of an interrupted run", stale)
        manifest.body["complete"] = False  # until every unit has succeeded
        manifest.write()  # fails early, with one message, if the folder is not writable
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise output_error(self.folder, e, self.folder) from e
        todo, decided = self.plan()
        log.info("%s: %d unit(s) to run, %d decided already, into %s", self.name, len(todo), len(decided), self.folder)
        bar = self.progress(len(todo) + len(decided), self.progress_desc, "scene") if self.progress else None

        def on_result(task, result: UnitResult) -> None:
            key = self.key(task)
            if result.reason:  # a store's files by their URIs, in the manifest as in the messages
                result.reason = store.shown(result.reason)
            entry = {**self.describe(task), **result.entry()}
            if result.status == "skipped":  # done by an earlier run: its entry stays, updated
                summary.skipped += 1
                entry = {**manifest.scenes.get(key, {}), **entry, "status": "ok"}
                entry.pop("reason", None)
            elif result.status == "ok":
                summary.ok += 1
            elif result.status == "absent":  # not this stage's to do (its input is missing), not its failure
                pass
            else:
                summary.failed += 1
                summary.failures[key] = result.reason or "unknown"
                log.info("%s failed: %s", key, result.reason)  # printed once, in the report
            manifest.scenes[key] = entry
            self.on_result(task, result)
            summary.seconds = time.perf_counter() - start
            manifest.body["last_run"] = summary.to_dict()
            if result.disk_full:  # stop: the scenes after it would fail the same way, each in its own words
                with contextlib.suppress(OutputError):  # the manifest may not fit either; it says incomplete already
                    manifest.write()
                raise DiskFull(result.reason)
            manifest.write()
            if bar is not None:
                bar.set_postfix(**self.postfix())
                bar.update(1)

        def on_error(task, error: BaseException) -> UnitResult:
            if isinstance(error, TaskTimeout):
                return self.result_cls(reason=str(error))
            return self.result_cls(reason=f"worker failed: {getattr(error, 'kind', type(error).__name__)}: {error}")

        def on_tick(running: int, retried: int) -> None:
            summary.counts["retries"] = retried
            if bar is not None:
                bar.tick(running=running, retried=retried, failed=summary.failed)

        try:
            for task, result in decided:
                on_result(task, result)
            work, mounted = type(self).work, store.mounts()
            if mounted:  # a store's folders: each worker mounts them too (the same paths on every node)
                work = partial(store.in_mounts, work, mounted)
            retried = self.distributor(work, todo, on_result, on_error, self.common(), on_tick=on_tick)
            summary.counts["retries"] = retried or 0
        finally:
            if bar is not None:
                bar.close()
        self.finish(manifest)
        # complete only when every unit succeeded: a rerun retries exactly the failed ones
        manifest.body["complete"] = summary.failed == 0
        summary.seconds = time.perf_counter() - start
        manifest.body["last_run"] = summary.to_dict()
        manifest.write()
        self._settle(manifest)
        return summary


def report(stage: Stage, summary: StageSummary, stream: TextIO) -> int:
    """Print the first failures, the summary line and where the outputs are; return the exit status."""
    failures = list(summary.failures.items())
    for key, reason in failures[:SHOWN_FAILURES]:
        print(f"  FAILED {key}: {shorten(reason)}", file=stream)  # whole in the manifest (URIs: on_result)
    manifest = stage.manifest_cls.path_in(stage.folder)
    if len(failures) > SHOWN_FAILURES:
        print(f"  ... and {len(failures) - SHOWN_FAILURES} more (see {store.shown(str(manifest))})", file=stream)
    print(stage.line(summary), file=stream)
    if summary.counts.get("retries"):
        print(f"  {summary.counts['retries']} retr{'y' if summary.counts['retries'] == 1 else 'ies'} "
              "(workers that died or scenes past --scene-timeout)", file=stream)  # fmt: skip
    print(store.shown(f"{stage.folder_name}: {stage.folder}  (manifest: {manifest})"), file=stream)
    return EXIT_FAILED if summary.failed else EXIT_OK


def run_unit(
    result: UnitResult, body: Callable[[UnitResult], None], expected: tuple[type[Exception], ...] = (OutputError,)
) -> UnitResult:
    """Run a unit's ``body`` (which fills ``result`` and sets its status), never raising.

    An ``expected`` exception (its message names the file and the problem)
    becomes the failed result's reason as it is; any other exception too, with
    its type in front, so one bad scene never stops a run. ``seconds`` is set.
    """
    start = time.perf_counter()
    try:
        body(result)
    except DiskFull as e:
        result.status, result.reason, result.disk_full = "failed", str(e), True
    except expected as e:
        result.status, result.reason = "failed", str(e)
    except Exception as e:  # noqa: BLE001  (one bad scene never stops the run)
        log.debug("unit failed", exc_info=True)
        result.status, result.reason = "failed", f"{type(e).__name__}: {e}"
    result.seconds = round(time.perf_counter() - start, 3)
    return result
