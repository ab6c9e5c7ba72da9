"""The reference the monitor tests against, and moving it: re-basing on another version, adopting a
new normal, starting the evidence afresh, and rebuilding the windows from storage.

The windows hold only rows the reference version served, so every change of reference comes with
fresh windows (``_use``), refilled from the stored live rows and labels of the new reference
(``_restore_windows``, also run at start-up, so a restarted monitor tests what its predecessor would
have). A re-base happens after a promoted roll-out or its guard (``_rebase_to_version``, called by
``Rollouts``), after a retrain episode (``_rebase_onto``, called by ``Episodes``), and when Serve has
answered with another version for ``window.test_every_rows`` rows in a row while nothing is in flight
(``_follow_served_version``, ``drift.monitor.follow_served_version``): testing one version's traffic
against another version's reference would report the swap itself as drift. Loading a reference is I/O
and runs without the state lock; swapping it in runs under it.

A mixin of ``DriftMonitor`` (``foundry.drift.monitor``): it uses the monitor's ``cfg``, ``ref``,
``windows``, ``controller``, ``versions``, ``rollouts``, ``new_normal``, ``live``, ``counters``, its
locks, ``_say``, ``_forget_onset`` (``rounds``) and ``_write_live`` (``intake``).
"""

from __future__ import annotations

import time
from typing import Any

from foundry.drift import reference
from foundry.drift.controller import Phase
from foundry.drift.reference import Reference


class Rebasing:
    """Which reference the monitor tests against, and every change of it."""

    def _baseline_for(self, version: str) -> dict[str, Any] | None:
        return self.new_normal if self.new_normal and self.new_normal.get("version") == version else None

    def _use(self, ref: Reference) -> None:
        """Test against ``ref`` from now on, with fresh windows (under the lock)."""
        self.ref = ref
        self.windows.reset(ref.suite, ref.alarm)
        if not self.controller.state.reference_version:
            self.controller.rebase(ref.version)

    def _rebase_onto(self, ref: Reference) -> None:
        """Watch ``ref``'s version from now on (under the lock)."""
        self._use(ref)
        self.controller.rebase(ref.version)
        self.new_normal = None
        self._forget_onset()
        self.versions.rebased(time.time())  # rows answered before now belong to the previous version's world

    def _rebase_to_version(self, version: str) -> None:
        """A roll-out or its guard changed the version Serve answers with: watch it (I/O: without the lock)."""
        previous = self.controller.state.reference_version
        if version == previous:
            return
        ref = reference.load(self.cfg, version)
        with self._locked():
            self._rebase_onto(ref)
        restored = self._restore_windows()
        self._say("rebased", f"detectors re-based from {previous} to {version}'s reference sample ({restored} of "
                  "its live rows reloaded)", version=version, previous=previous, reason="rollout")

    def _fresh_evidence(self) -> None:
        """After a rollback the alarm starts afresh (under the lock): the drift that asked for the rolled-back
        version opens no new episode until new rows show it again."""
        self.windows.reset(self.ref.suite, self.ref.alarm)
        self._forget_onset()

    def _adopt_new_normal(self, ref: Reference, baseline: dict[str, Any]) -> None:
        """Test against the new-normal reference ``ref`` (``baseline``: where it is stored) (under the lock)."""
        self._use(ref)
        self.new_normal = baseline
        self.windows.restored_ids = set()
        self._forget_onset()

    def _restore_windows(self) -> int:
        """Rebuild windows and the error stream from storage (after a restart or a re-base)."""
        self._write_live(force=True)  # what was taken so far is read back with the rest
        version = self.controller.state.reference_version
        recent, rows, labels = reference.stored_rows(self.cfg, self.live, version, self._baseline_for(version),
                                                     self.ref.predictor)
        with self._locked():
            # A batch written before this read may still be queued (or be re-sent by Ray after a restart).
            self.windows.restored_ids = set(recent["request_id"]) if not recent.empty else set()
            if rows is None:
                return 0
            self.counters["labels_matched"] += self.windows.absorb_encoded(rows)
            if not labels.empty:
                self.windows.match_labels(labels["request_id"].tolist(), labels["label"].tolist())
            self.windows.rows_since_test = 0
            self.windows.labels_since_test = 0
        return len(recent)

    def _follow_served_version(self) -> None:
        """Re-base on the version Serve has answered with for a while (see the module docstring)."""
        version = self.versions.to_follow(self.cfg.drift.window.test_every_rows)
        if (version is None or not self.cfg.drift.monitor.follow_served_version or self.rollouts.busy
                or self.controller.state.phase not in (Phase.idle, Phase.cooldown, Phase.gave_up)):
            return
        run = self.versions.other_run[1]
        previous = self.controller.state.reference_version
        try:
            ref = reference.load(self.cfg, version)
        except Exception as exc:  # not in this registry (another model's?), or its files fail the checksums
            with self._locked():
                self.versions.unloadable.add(version)
            self._say("rebase_failed", f"Serve answers with {version}, which cannot be loaded from the "
                      f"registry ({type(exc).__name__}: {exc}); still testing against {previous}",
                      version=version, previous=previous)
            return
        with self._locked():
            self._rebase_onto(ref)
        restored = self._restore_windows()
        self._say("rebased", f"Serve answers with {version} ({run} live rows in a row), not {previous}: it "
                  f"was swapped outside this monitor; detectors re-based on {version}'s reference sample "
                  f"({restored} of its live rows reloaded)", version=version, previous=previous,
                  reason="served_version_changed", rows=run)
