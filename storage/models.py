"""Cumulus metadata tables on the service's shared Base. Object bodies are files (blobstore.py).

An object row points at one or more immutable blobs ("segments"): one for a plain PUT, one per
part for a completed multipart upload, so completing an upload never copies data. Keys compare as
UTF-8 bytes (S3's listing order): SQLite's default collation does that; PostgreSQL needs "C".
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ec2gw.db.models import Base, UTCDateTime, utcnow

#: object keys and prefixes: byte order on every backend
KeyString = String(1024).with_variant(String(1024, collation="C"), "postgresql")


class Bucket(Base):
    __tablename__ = "s3_buckets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255).with_variant(String(255, collation="C"), "postgresql"), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    region: Mapped[str] = mapped_column(String(32), default="us-east-1")
    #: canned ACL: "private" | "public-read" | "public-read-write" | "authenticated-read"
    acl: Mapped[str] = mapped_column(String(32), default="private")
    #: grants beyond the canned ACL, JSON [[grantee, permission], ...] (storage/access.py), or NULL
    grants: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: tag set, JSON [[key, value], ...] (storage/tagging.py), or NULL: none
    tags: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Object(Base):
    __tablename__ = "s3_objects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("s3_buckets.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(KeyString)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    etag: Mapped[str] = mapped_column(String(64))  # without quotes
    last_modified: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Content-Type, Content-Encoding, Cache-Control, ... as JSON {header name: value}
    headers_json: Mapped[str] = mapped_column(Text, default="{}")
    #: user metadata (x-amz-meta-*) as JSON {lowercase name: value}
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    acl: Mapped[str] = mapped_column(String(32), default="private")
    grants: Mapped[str | None] = mapped_column(Text, nullable=True)
    storage_class: Mapped[str] = mapped_column(String(32), default="STANDARD")
    #: JSON list of {"b": blob id, "n": size, "c": part checksum or null}
    segments_json: Mapped[str] = mapped_column(Text)
    parts_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: the multipart upload this object was completed from (a repeated Complete answers from it)
    upload_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    checksum_algorithm: Mapped[str | None] = mapped_column(String(16), nullable=True)
    checksum_value: Mapped[str | None] = mapped_column(String(128), nullable=True)
    checksum_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: tag set, JSON [[key, value], ...] (storage/tagging.py), or NULL: none
    tags: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (UniqueConstraint("bucket_id", "key", name="uq_s3_object_key"),)

    @property
    def segments(self) -> list[dict[str, Any]]:
        return list(json.loads(self.segments_json))

    @property
    def user_metadata(self) -> dict[str, str]:
        return dict(json.loads(self.metadata_json or "{}"))

    @property
    def content_headers(self) -> dict[str, str]:
        return dict(json.loads(self.headers_json or "{}"))


class MultipartUpload(Base):
    __tablename__ = "s3_uploads"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bucket_id: Mapped[int] = mapped_column(ForeignKey("s3_buckets.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(KeyString)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    initiated: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    headers_json: Mapped[str] = mapped_column(Text, default="{}")
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    acl: Mapped[str] = mapped_column(String(32), default="private")
    grants: Mapped[str | None] = mapped_column(Text, nullable=True)
    storage_class: Mapped[str] = mapped_column(String(32), default="STANDARD")
    checksum_algorithm: Mapped[str | None] = mapped_column(String(16), nullable=True)
    checksum_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: the tag set the completed object gets (x-amz-tagging), JSON as on Object, or NULL
    tags: Mapped[str | None] = mapped_column(Text, nullable=True)
    __table_args__ = (Index("ix_s3_uploads_key", "bucket_id", "key", "id"),)


class Part(Base):
    __tablename__ = "s3_parts"
    upload_id: Mapped[str] = mapped_column(ForeignKey("s3_uploads.id", ondelete="CASCADE"), primary_key=True)
    part_number: Mapped[int] = mapped_column(Integer, primary_key=True)
    blob_id: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(64))  # hex MD5 without quotes
    checksum_value: Mapped[str | None] = mapped_column(String(128), nullable=True)
    last_modified: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)



class StorageUsage(Base):
    """Bytes a user holds in Cumulus (their objects plus the parts of their unfinished uploads),
    kept as a running total by every transaction that adds, replaces or removes an object or a
    part (storage/usage.py), so a quota check reads one row instead of summing every object."""

    __tablename__ = "s3_usage"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
