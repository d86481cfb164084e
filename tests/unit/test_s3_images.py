"""storage.images, the Python API the EC2 side calls: layout, put_file, open_object, object_info, can_read."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest

from ec2gw import accounts
from ec2gw.app import App
from ec2gw.config import Settings
from ec2gw.errors import ServiceError
from storage import images


@pytest.fixture
def app(tmp_path: Path) -> Any:
    a = App(Settings(data_dir=tmp_path))
    a.db.create_schema()
    with a.db.session(write=True) as s:
        ids = {}
        for name, admin in (("root", True), ("carol", False), ("dave", False)):
            accounts.create_user(s, name, is_admin=admin)
            ids[name] = accounts.get_user(s, name).id
    a.user_ids = ids
    yield a
    a.db.dispose()


def test_layout_and_format(app: Any) -> None:
    assert images.user_image_key(app.settings, "carol", "disk.img") == "VMS/carol/disk.img"
    assert images.common_image_key(app.settings, "base") == "VMS/common/base"
    assert images.detect_format(b"QFI\xfb\x00\x00\x00\x03") == "qcow2"
    assert images.detect_format(b"\x00" * 512) == "raw"
    assert images.detect_format(b"") == "raw"


def test_put_file_open_object_and_access(app: Any, tmp_path: Path) -> None:
    carol, dave, root = app.user_ids["carol"], app.user_ids["dave"], app.user_ids["root"]
    data = b"QFI\xfb" + os.urandom(3 * 1024 * 1024)
    src = tmp_path / "disk.qcow2"
    src.write_bytes(data)
    key = images.user_image_key(app.settings, "carol", "disk.qcow2")
    info = images.put_file(app, carol, "Repo", key, src, len(data))  # creates the bucket on first use
    assert info.size == len(data) and info.content_type == "application/octet-stream"
    same = images.object_info(app, "Repo", key)
    assert same is not None and same.etag == info.etag and same.size == len(data)
    handle, size = images.open_object(app, "Repo", key)
    with handle:
        assert size == len(data)
        assert images.detect_format(handle.read(512)) == "qcow2"
        handle.seek(0)
        assert handle.read() == data
    assert images.can_read(app, carol, "Repo", key)
    assert images.can_read(app, root, "Repo", key)
    assert not images.can_read(app, dave, "Repo", key)
    common = images.common_image_key(app.settings, "shared")
    images.put_file(app, root, "Repo", common, io.BytesIO(b"raw disk"), 8)
    assert images.can_read(app, dave, "Repo", common)
    with pytest.raises(ServiceError) as e:  # users write only under their own prefix
        images.put_file(app, dave, "Repo", common, io.BytesIO(b"x"), 1)
    assert e.value.code == "AccessDenied"
    with pytest.raises(ServiceError) as e:
        images.put_file(app, carol, "Repo", "VMS/carol/x", io.BytesIO(b"short"), 10)
    assert e.value.code == "IncompleteBody"
    assert images.object_info(app, "Repo", "nope") is None
    assert images.object_info(app, "NoBucket", "k") is None
    assert not images.can_read(app, carol, "NoBucket", "k")
    with pytest.raises(FileNotFoundError):
        images.open_object(app, "Repo", "nope")
    tmp = Path(app.settings.data_dir) / "cumulus" / "tmp"
    assert list(tmp.iterdir()) == []
