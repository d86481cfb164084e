"""An object's tags are its owner's and its bucket owner's: a copy does not hand them to a reader.

GetObjectTagging refuses bob on alice's public-read object, but CopyObject copies the source's tags
by default (x-amz-tagging-directive COPY): bob could copy her object into his bucket (or into her
public-read-write bucket, as the new object's owner) and read her tags on the copy. Copying tags
now needs the right to read them; bob's copy with REPLACE (new tags or none) still works.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.functional.s3_fixtures import empty_and_delete, new_bucket_name
from tests.security import refused
from tests.security.conftest import Tenant


@pytest.fixture
def tagged(alice: Tenant, bob: Tenant) -> Iterator[tuple[str, str]]:
    """(alice's public-read-write bucket with a public-read object "tagged" carrying a secret tag, bob's bucket)."""
    hers, his = new_bucket_name(), new_bucket_name()
    alice.s3.create_bucket(Bucket=hers)
    alice.s3.put_bucket_acl(Bucket=hers, ACL="public-read-write")
    alice.s3.put_object(Bucket=hers, Key="tagged", Body=b"hello", ACL="public-read", Tagging="secret=swordfish")
    bob.s3.create_bucket(Bucket=his)
    try:
        yield hers, his
    finally:
        empty_and_delete(bob.s3, his)
        empty_and_delete(alice.s3, hers)


def tags(client: Any, bucket: str, key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in client.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


def test_a_reader_cannot_copy_the_tags_out(alice: Tenant, bob: Tenant, tagged: tuple[str, str]) -> None:
    hers, his = tagged
    assert bob.s3.get_object(Bucket=hers, Key="tagged")["Body"].read() == b"hello"  # bob may read the bytes
    refused(bob.s3.get_object_tagging, Bucket=hers, Key="tagged", codes={"AccessDenied"})
    for dest in (his, hers):  # into his own bucket, or beside it in hers (the copy would be his)
        code, _, message = refused(bob.s3.copy_object, Bucket=dest, Key="copy", CopySource=f"{hers}/tagged",
                                   codes={"AccessDenied"})
        assert "x-amz-tagging-directive" in message, message
        refused(bob.s3.get_object_tagging, Bucket=dest, Key="copy", codes={"NoSuchKey", "AccessDenied"})
    # without her tags, the copy is his to make and to tag
    bob.s3.copy_object(Bucket=his, Key="copy", CopySource=f"{hers}/tagged", TaggingDirective="REPLACE")
    assert tags(bob.s3, his, "copy") == {}
    bob.s3.copy_object(Bucket=his, Key="copy2", CopySource=f"{hers}/tagged", TaggingDirective="REPLACE",
                       Tagging="mine=yes")
    assert tags(bob.s3, his, "copy2") == {"mine": "yes"}
    # the owner still copies her object with its tags
    alice.s3.copy_object(Bucket=hers, Key="own-copy", CopySource=f"{hers}/tagged")
    assert tags(alice.s3, hers, "own-copy") == {"secret": "swordfish"}
    assert tags(alice.s3, hers, "tagged") == {"secret": "swordfish"}
