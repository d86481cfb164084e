"""Cumulus's S3 operations, by name: importing this module registers all of them.

buckets.py   ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation, GetBucketVersioning,
             bucket/object ACLs
listing.py   ListObjects, ListObjectsV2, ListObjectVersions
tagging.py   Put/Get/DeleteObjectTagging, Put/Get/DeleteBucketTagging
objects.py   PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects, CopyObject
multipart.py Create/Complete/AbortMultipartUpload, UploadPart, UploadPartCopy, ListParts, ListMultipartUploads
"""

from __future__ import annotations

from storage import buckets, listing, multipart, objects, tagging  # noqa: F401 - registration by import
from storage.context import S3Context, s3

registry = s3

__all__ = ["S3Context", "registry"]
