"""Labels in the traffic generator (``foundry.demo.traffic``): sent with their own JSON types, and every label
``/feedback`` refuses counted with its reason. A small HTTP server stands in for a regression model's API
(the real one is in tests/integration/test_real_regression.py): ``/feedback`` takes numbers only, as
Foundry's does for a regression model."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from foundry.demo.traffic import TrafficGenerator, label_values, mean_abs_error


class _RegressionApi(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 -- http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/predict":
            preds = [{"request_id": f"r{id(row)}-{i}", "prediction": 10.0, "model_version": "v1"}
                     for i, row in enumerate(body["rows"])]
            status, answer = 200, {"model_version": "v1", "predictions": preds}
        elif all(isinstance(x["label"], int | float) for x in body["labels"]):
            status, answer = 200, {"accepted": len(body["labels"])}
        else:
            status, answer = 422, {"error": "wrong_type", "message": "labels[0].label: expected a number, got str"}
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RegressionApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_label_values_keep_their_json_types():
    assert label_values(pd.Series([151.0, 75.5])) == [151.0, 75.5]
    assert label_values(pd.Series([0, 1])) == [0, 1]
    assert label_values(pd.Series(["late", "on_time"])) == ["late", "on_time"]


def test_numeric_labels_are_taken_and_refused_ones_are_counted_with_the_reason(api):
    """Catches: a frame's numeric labels sent as strings (every one refused by a regression model's
    /feedback), or refusals dropped unseen (the monitor then never gets a label, and nobody knows)."""
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [12.0, 8.0, 10.0, 13.0]})
    traffic = TrafficGenerator(api, "key", rows_per_request=2, concurrency=1)
    try:
        traffic.send_frame(frame, "y", "numbers")
        traffic.flush_labels()
        assert (traffic.log.labels_sent, traffic.log.labels_refused) == (4, 0)
        assert mean_abs_error(traffic.log.records) == pytest.approx((2 + 2 + 0 + 3) / 4)

        traffic.send_rows([{"x": 1.0}, {"x": 2.0}], ["12.0", "8.0"], "strings")
        traffic.flush_labels()
        assert (traffic.log.labels_sent, traffic.log.labels_refused) == (6, 2)
        assert traffic.log.label_errors and traffic.log.label_errors[0].startswith("422: "), traffic.log.label_errors
        assert "expected a number" in traffic.log.label_errors[0]
    finally:
        traffic.close()
