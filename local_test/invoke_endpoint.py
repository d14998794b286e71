#!/usr/bin/env python3
"""Send a payload to a deployed SageMaker endpoint, as predict.sh does to a local server, and print
the response body. boto3 (requirements-dev.txt) calls ``sagemaker-runtime``'s InvokeEndpoint with
your AWS credentials and region (``AWS_PROFILE``, ``AWS_REGION``/``AWS_DEFAULT_REGION`` or
``--region``).

    python local_test/invoke_endpoint.py ENDPOINT                      # payloads/scores.json
    python local_test/invoke_endpoint.py ENDPOINT local_test/payloads/embeddings.jsonl
    ACCEPT=application/jsonlines python local_test/invoke_endpoint.py ENDPOINT payload.json

The content type comes from the extension as in predict.sh (``*.jsonl``: application/jsonlines,
else application/json) unless given. Exits 1 when the endpoint answers with an error (the model's
status and message on stderr), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PAYLOADS = Path(__file__).resolve().parent / "payloads"
DEFAULT_PAYLOAD = PAYLOADS / "scores.json"


def content_type_for(payload: Path) -> str:
    """predict.sh's rule: JSON Lines for ``*.jsonl``, else JSON."""
    return "application/jsonlines" if payload.name.endswith(".jsonl") else "application/json"


def invoke(client, endpoint: str, payload: Path, content_type: str | None = None,
           accept: str | None = None) -> bytes:
    """The response body of InvokeEndpoint for the bytes of ``payload``; errors propagate as
    botocore's ``ClientError``."""
    request = {"EndpointName": endpoint, "Body": payload.read_bytes(),
               "ContentType": content_type or content_type_for(payload)}
    if accept:
        request["Accept"] = accept
    response = client.invoke_endpoint(**request)
    return response["Body"].read()


def make_client(region: str | None = None):
    """A ``sagemaker-runtime`` client (imported here, so ``--help`` works without boto3)."""
    import boto3

    return boto3.client("sagemaker-runtime", region_name=region)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="POST a payload to a SageMaker endpoint "
                                                 "(InvokeEndpoint) and print the response body.")
    parser.add_argument("endpoint", help="endpoint name")
    parser.add_argument("payload", nargs="?", type=Path, default=DEFAULT_PAYLOAD,
                        help=f"payload file (default: {DEFAULT_PAYLOAD})")
    parser.add_argument("content_type", nargs="?",
                        help="default: application/jsonlines for *.jsonl, else application/json")
    parser.add_argument("--accept", default=os.environ.get("ACCEPT") or None,
                        help="Accept header (default: $ACCEPT, else none: the server's default)")
    parser.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    args = parser.parse_args(argv)
    if not (args.payload.is_file() and os.access(args.payload, os.R_OK)):
        parser.error(f"payload file '{args.payload}' does not exist or is unreadable")
    return args


def main(argv: list[str] | None = None, client=None) -> int:
    args = parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = client or make_client(args.region)
        body = invoke(client, args.endpoint, args.payload, args.content_type, args.accept)
    except ClientError as exc:
        error, meta = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
        status = exc.response.get("OriginalStatusCode") or meta.get("HTTPStatusCode")
        print(f"invoke_endpoint.py: {error.get('Code', 'error')} (HTTP {status}) from endpoint "
              f"{args.endpoint!r}: {error.get('Message', exc)}", file=sys.stderr)
        if exc.response.get("OriginalMessage"):  # ModelError: the container's own response body
            print(exc.response["OriginalMessage"])
        return 1
    except BotoCoreError as exc:  # no credentials, no region, endpoint unreachable, ...
        print(f"invoke_endpoint.py: {exc}", file=sys.stderr)
        return 1
    print(body.decode("utf-8", "replace"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
