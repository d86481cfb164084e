"""Eucalyptus's own form of DescribeInstanceTypes, on Eucalyptus's path.

Eucalyptus had DescribeInstanceTypes long before AWS (whose action of that name answers another
shape): `instanceTypeDetails/item` elements holding name, cpu, disk (GiB) and memory (MiB), in the
namespace http://msgs.eucalyptus.com/<Eucalyptus version>. libcloud's EucNodeDriver.list_sizes and
euca2ools' euca-describe-instance-types read that form from the service path /services/Eucalyptus,
so a DescribeInstanceTypes sent there is answered so; every other action is the same on every path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ec2gw.aws.serializer import xml_escape

#: the service path of Eucalyptus's EC2 endpoint (http://HOST:8773/services/Eucalyptus)
EUCALYPTUS_PATH = "/services/Eucalyptus"
#: the release libcloud's EucNodeDriver expects unless given another api_version
DEFAULT_EUCALYPTUS_VERSION = "3.3.0"


def is_eucalyptus_path(path: str) -> bool:
    return path.rstrip("/") == EUCALYPTUS_PATH


#: instance type names -> per zone {"ZoneName", "Max", "Available"} (the `Availability` of a request)
Capacity = Callable[[Any, list[str]], dict[str, list[dict[str, Any]]]]


def serialize_instance_types(result: dict[str, Any], request_id: str, eucalyptus_version: str,
                             availability: dict[str, list[dict[str, Any]]] | None = None) -> bytes:
    """The DescribeInstanceTypes `result` (AWS's output shape) in Eucalyptus's form, with each type's
    capacity per zone when `availability` is given. The disk is 0: an instance's root disk is its
    image, whatever the type."""
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<DescribeInstanceTypesResponseType xmlns="http://msgs.eucalyptus.com/{xml_escape(eucalyptus_version)}">',
        f"<requestId>{request_id}</requestId><instanceTypeDetails>",
    ]
    for t in result.get("InstanceTypes", []):
        disk = (t.get("InstanceStorageInfo") or {}).get("TotalSizeInGB") or 0
        out.append(
            f"<item><name>{xml_escape(t['InstanceType'])}</name><cpu>{t['VCpuInfo']['DefaultVCpus']}</cpu>"
            f"<disk>{disk}</disk><memory>{t['MemoryInfo']['SizeInMiB']}</memory>"
        )
        if availability is not None:
            out.append("<availability>")
            for z in availability.get(t["InstanceType"], []):
                out.append(f"<item><zoneName>{xml_escape(z['ZoneName'])}</zoneName><max>{z['Max']}</max>"
                           f"<available>{z['Available']}</available></item>")
            out.append("</availability>")
        out.append("</item>")
    out.append("</instanceTypeDetails></DescribeInstanceTypesResponseType>")
    return "".join(out).encode("utf-8")
