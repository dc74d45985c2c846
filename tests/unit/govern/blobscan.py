"""Reading a workspace's blob store without Keel: the local files, or the bucket's objects through boto3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from keel.store import Store


def raw_blob_files(store: Store) -> Iterator[tuple[str, bytes]]:
    """The blob store as files or objects, read without Keel (local directory, or S3 through boto3)."""
    url = store.blobs.url
    if "://" not in url:
        for path in Path(url).rglob("*"):
            if path.is_file():
                yield str(path), path.read_bytes()
        return
    import boto3

    options = store.settings.blob_options
    client = boto3.client("s3", endpoint_url=options["endpoint_url"], aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")  # fmt: skip
    bucket, prefix = url.removeprefix("s3://").split("/", 1)
    for item in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        yield item["Key"], client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
