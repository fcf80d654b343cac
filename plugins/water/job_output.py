"""Output folders of the pod entrypoints (include/jobs), on any filesystem pyarrow opens: a
local folder (the local target) or an S3 prefix (the cloud).

On S3 a folder is only a key prefix. pyarrow's S3FileSystem stands in for folders with
zero-byte `<prefix>/` objects: `create_dir` writes one per level, and `delete_dir_contents`
or a `delete_file` that empties a folder writes one back. Inside a SageMaker input prefix
such an object is an input file to SageMaker, and every other reader has to know to skip
it. Nothing here writes one: folders are made only where they are real, and on S3 an output
folder is emptied by deleting its objects, never through pyarrow's folder emulation.

The entrypoints run as plain scripts, in the jobs image and by the local target, with water
installed; this module needs pyarrow, and boto3 on S3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.fs as pafs
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef


def output_folder(uri: str) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path) of an output folder, emptied of what an earlier run wrote there."""
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(uri)
    if fs.type_name == "s3":
        delete_s3_objects(root)
    else:
        fs.create_dir(root, recursive=True)
        fs.delete_dir_contents(root, missing_dir_ok=True)
    return fs, root


def folder(fs: pafs.FileSystem, path: str) -> str:
    """`path`, ready for files to be written into it: made where folders are real, never on S3."""
    if fs.type_name != "s3":
        fs.create_dir(path, recursive=True)
    return path


def delete_s3_objects(path: str) -> int:
    """Deletes every object under `bucket/prefix/` (pyarrow's path form of an S3 folder); how many."""
    import boto3

    bucket, _, prefix = path.strip("/").partition("/")
    if not prefix:
        raise ValueError(f"{path!r} is a whole bucket, not an output folder")
    client = boto3.client("s3")
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/")
        for item in page.get("Contents", [])
    ]
    for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
        batch: list[ObjectIdentifierTypeDef] = [{"Key": key} for key in keys[start : start + 1000]]
        answer = client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise OSError(f"could not delete s3://{bucket}/{first['Key']}: {first['Code']} {first.get('Message', '')}")
    return len(keys)
