"""The parts of ``make demo`` (``python -m cluster.demo``, whose orchestration lives in ``cluster/demo.py``): the
session (API key, fresh start), live traffic (``traffic``), following the loop (``watch``), the summary in numbers
(``summary``) and the report folder (``report``)."""
