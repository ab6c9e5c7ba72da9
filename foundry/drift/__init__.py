"""Drift monitoring and self-healing: detectors, the monitor actor, the retrain controller, events.

The pieces, each in its own module:
- ``features``: the matrices detectors test (built from the preprocessor's encoding, so the monitor
  sees exactly what the model sees);
- ``detectors``: alibi-detect detectors built from ``conf/drift`` on a version's reference sample,
  stored with the version as data (``drift_detectors.json`` + ``.safetensors``) so monitors never recalibrate;
- ``controller``: the retrain decision logic (votes, consecutive rounds, single flight, cooldown,
  retries with backoff, another attempt on more data after a rejection, bounded attempts and episodes,
  then giving up), pure and clock-injected;
- ``onset``: where a drift began, a change-point estimate on the monitor's live rows (which rows a
  retrain learns from);
- ``new_normal``: after giving up, the detectors re-based on recent labelled live rows;
- ``sink``: the non-blocking, bounded hand-off from Serve replicas to the monitor;
- ``batch``: ``LiveBatch``, what Serve hands the monitor, checked once at the actor boundary;
- ``windows``: the monitor's live windows, label matching and which version served each row;
- ``reference``: a version's detectors, predictor and reference sample, loaded in one piece;
- ``live_store``/``events``/``state``: what the monitor persists (and ``state.StateLock``, its lock);
- ``retrain``: the retrain job's data set, overrides and outcome;
- ``runner``: the Jobs API side of a retrain (submit, poll, stop on timeout, outcome and cause);
- ``rollout``: Serve pointed at a promoted version, and the re-base that follows;
- ``episodes``: a retrain episode's life once the controller decided (admit, submit, poll, the
  outcome, roll-out, giving up and the new normal), over ``runner``, ``rollout`` and ``new_normal``;
- ``monitor``: the ``DriftMonitor`` Ray actor, a thin loop over the pieces above (no lock held
  across network calls; errors in the loop are counted and shown), its own steps in ``intake`` (the
  ``ingest*`` methods, queues drained into the windows), ``rounds`` (a test round and its decision),
  ``rebase`` (the reference and every change of it) and ``bookkeeping`` (``state.json``, metrics).
"""

from __future__ import annotations


def monitor_name(name_prefix: str, model: str) -> str:
    """The monitor actor's name (one per served model), as shown on the dashboard's Actors page."""
    return f"{name_prefix}-{model}"
