"""STS GetCallerIdentity on the EC2 endpoint: who the signed caller is.

Why: tools ask it before they touch EC2 resources to learn their account id (Ansible's
amazon.aws.ec2_security_group fails without it), and they send it to the endpoint they were given,
signed for service ``sts``. It is the only STS action served: it reads nothing but the caller.
"""

from __future__ import annotations

from lxml import etree

ACTION = "GetCallerIdentity"
SIGNING_NAME = "sts"
API_VERSION = "2011-06-15"
XML_NAMESPACE = f"https://sts.amazonaws.com/doc/{API_VERSION}/"


def is_sts(params: list[tuple[str, str]]) -> bool:
    """A GetCallerIdentity request (Action with STS's Version, or none)."""
    values = dict(params)
    return values.get("Action") == ACTION and values.get("Version", API_VERSION) == API_VERSION


def caller_identity(account_id: str, user_name: str, access_key: str, request_id: str) -> bytes:
    """STS's GetCallerIdentityResponse for a user (an IAM user's ARN in the caller's account)."""
    root = etree.Element("GetCallerIdentityResponse", nsmap={None: XML_NAMESPACE})
    result = etree.SubElement(root, "GetCallerIdentityResult")
    for name, value in (("Arn", f"arn:aws:iam::{account_id}:user/{user_name}"), ("UserId", access_key),
                        ("Account", account_id)):
        etree.SubElement(result, name).text = value
    meta = etree.SubElement(root, "ResponseMetadata")
    etree.SubElement(meta, "RequestId").text = request_id
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
