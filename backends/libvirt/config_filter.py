"""libvirt network filter XML (<filter>) from and to backends.filters.FilterSpec, with lxml.

    <filter name='ec2gw-i-...' chain='root'>
      <uuid>...</uuid>
      <filterref filter='clean-traffic'/>
      <rule action='accept' direction='in' priority='500'><tcp srcipaddr='10.0.0.0' srcipmask='8'/></rule>
    </filter>

from_xml() reads what libvirt answers (nwfilterLookupByName().XMLDesc()) back into a FilterSpec;
attributes libvirt adds to a rule element of its own accord are kept, so a filter defined by
ec2gw compares equal to its spec (FilterSpec.same_as) after the round trip.
"""

from __future__ import annotations

from lxml import etree

from backends.filters import FilterRule, FilterSpec


def filter_xml(spec: FilterSpec) -> str:
    """The <filter> document for ``spec`` (with its uuid when it has one)."""
    root = etree.Element("filter", name=spec.name, chain=spec.chain)
    if spec.uuid:
        etree.SubElement(root, "uuid").text = spec.uuid
    for ref in spec.refs:
        etree.SubElement(root, "filterref", filter=ref)
    for rule in spec.rules:
        el = etree.SubElement(root, "rule", action=rule.action, direction=rule.direction, priority=str(rule.priority))
        etree.SubElement(el, rule.protocol, dict(rule.attrs))
    return etree.tostring(root, pretty_print=True, encoding="unicode")


def parse_filter(text: str | bytes) -> FilterSpec:
    """A FilterSpec from a <filter> document (libvirt's answer or filter_xml()'s)."""
    root = etree.fromstring(text.encode() if isinstance(text, str) else text)
    if root.tag != "filter":
        raise ValueError(f"expected <filter>, got <{root.tag}>")
    refs: list[str] = []
    rules: list[FilterRule] = []
    for el in root:
        if el.tag == "filterref":
            refs.append(el.get("filter", ""))
        elif el.tag == "rule":
            body = [c for c in el if isinstance(c.tag, str)]
            protocol = body[0].tag if body else "all"
            attrs = tuple((k, v) for k, v in body[0].attrib.items()) if body else ()
            rules.append(FilterRule(el.get("action", "accept"), el.get("direction", "inout"), str(protocol),
                                    int(el.get("priority", "500")), attrs))  # type: ignore[arg-type]
    return FilterSpec(name=root.get("name", ""), chain=root.get("chain", "root"), uuid=root.findtext("uuid"),
                      refs=refs, rules=rules)
