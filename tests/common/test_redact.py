"""Credentials out of source URLs: the redaction itself, and the records made from an older data report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from image_recognition.common.redact import redact_url, redact_urls, scrub
from image_recognition.evaluation.config import EvaluationConfig
from image_recognition.evaluation.record import provenance
from image_recognition.reporting.report import comparison_table, render_html

# The secrets below, each of which must be gone from a redacted URL.
SECRETS = ("AKIAUSER", "hunter2", "AKIAEXAMPLE", "s3cr3tsig", "g00gsig", "azuresig", "t0k3n", "k3y", "ap1")
PRESIGNED = (
    "https://AKIAUSER:hunter2@bucket.s3.amazonaws.com/cifar/cifar-10-python.tar.gz"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20250101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20250101T000000Z&X-Amz-Expires=3600&X-Amz-Signature=s3cr3tsig"
)

REDACTED = {
    # http(s): userinfo, the whole query and the fragment go; scheme, host, port and path stay.
    PRESIGNED: "https://bucket.s3.amazonaws.com/cifar/cifar-10-python.tar.gz",
    "http://mirror.example:8080/data/cifar-10-python.tar.gz?sv=2024&sig=azuresig#t0k3n": (
        "http://mirror.example:8080/data/cifar-10-python.tar.gz"
    ),
    # Other schemes: each parameter named like a credential goes; the others stay.
    (
        "file://AKIAUSER:hunter2@localhost/mirror/cifar-10-python.tar.gz?X-Goog-Algorithm=GOOG4-RSA-SHA256"
        "&X-Goog-Signature=g00gsig&sig=azuresig&token=t0k3n&Key=k3y&api_key=ap1&X-Amz-Signature=s3cr3tsig&version=3"
    ): "file://localhost/mirror/cifar-10-python.tar.gz?version=3",
    # synthetic:// keeps its options (and loses userinfo and credentials all the same).
    "synthetic://cifar10?train_per_class=50&test_per_class=10&seed=3": (
        "synthetic://cifar10?train_per_class=50&test_per_class=10&seed=3"
    ),
    "synthetic://AKIAUSER:hunter2@cifar10?seed=1&access_token=t0k3n": "synthetic://cifar10?seed=1",
    # Nothing to remove: as it was.
    "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "file:///data/mirror/cifar-10-python.tar.gz": "file:///data/mirror/cifar-10-python.tar.gz",
    "/data/mirror/cifar-10-python.tar.gz": "/data/mirror/cifar-10-python.tar.gz",
}


@pytest.mark.parametrize(("url", "expected"), REDACTED.items())
def test_userinfo_and_credential_parameters_are_removed_and_the_rest_kept(url, expected):
    assert redact_url(url) == expected
    assert not any(secret in redact_url(url) for secret in SECRETS)
    assert redact_url(expected) == expected  # redacting twice changes nothing


def test_parameters_are_redacted_in_a_copy():
    params = {"cifar10": {"source": {"url": PRESIGNED, "md5": "0" * 32}, "mirrors": [PRESIGNED]}, "epochs": 3}
    before = json.dumps(params)
    redacted = redact_urls(params)
    assert redacted["cifar10"]["source"] == {"url": REDACTED[PRESIGNED], "md5": "0" * 32}
    assert redacted["cifar10"]["mirrors"] == [REDACTED[PRESIGNED]] and redacted["epochs"] == 3
    assert json.dumps(params) == before  # the parameters the node gets are untouched


def test_an_error_message_quoting_the_url_or_its_password_is_scrubbed():
    message = f"nonnumeric port: 'hunter2@bucket.s3.amazonaws.com'; while fetching {PRESIGNED}"
    scrubbed = scrub(message, PRESIGNED)
    assert not any(secret in scrubbed for secret in SECRETS), scrubbed
    assert "bucket.s3.amazonaws.com" in scrubbed


def test_metrics_made_from_an_older_data_report_name_the_source_without_credentials():
    """A data report and checkpoint saved before URLs were redacted: the metrics' provenance is clean."""
    old_report = {"source": {"url": PRESIGNED, "md5": "0" * 32}}
    checkpoint = {"model_name": "cnn", "model_config": {}, "data": {"md5": "0" * 32, "url": PRESIGNED}}
    test_split = {"images": np.zeros((1, 3, 32, 32), dtype=np.uint8), "labels": np.array([0])}
    record = provenance(checkpoint, test_split, old_report, EvaluationConfig.from_dict({}))
    assert record["data_url"] == record["trained_on"]["url"] == REDACTED[PRESIGNED]


def test_a_report_of_older_metrics_names_the_source_without_credentials(evaluated):
    """Metrics and a data report saved before URLs were redacted: the HTML report is clean."""
    old_report = {"source": {"url": PRESIGNED, "md5": "0" * 32}, "sizes": {"test": 200}}
    results = {
        name: {**result, "metrics": {**result["metrics"], "provenance": {"data_url": PRESIGNED, "epochs": 2}}}
        for name, result in evaluated.items()
    }
    page = render_html(results, {}, comparison_table(evaluated), old_report)
    assert REDACTED[PRESIGNED] in page
    assert not any(secret in page for secret in SECRETS)
