"""Online serving: everything the Ray Serve application needs except Ray Serve itself.

The HTTP contract (``schema``), the error messages (``errors``), the API key (``auth``), the model
that is being served and its swaps (``holder``), batched inference (``inference``), feedback
storage (``feedback``), the service behind the routes (``service``), the FastAPI app (``app``),
metrics (``metrics``) and the Serve config and its control plane (``deploy_config``, ``control``)
live here so they can be tested without a cluster and reused outside Serve (the plain uvicorn
server of ``standalone`` runs the very same app). ``serve_apps/`` only wires them into a deployment. Nothing here imports Ray Serve at module
import time: only ``metrics.RayServeMetrics`` and ``control`` do, when called.
"""
