"""Formats of Strata's OpenAPI document that the fuzzer cannot know by name.

`cidr` (acl entries): an IPv4 or IPv6 network in CIDR notation with the host
bits zero, or one address. The document's description says so; this teaches
the generator to produce such values.
"""

import ipaddress

from hypothesis import strategies as st

import schemathesis


def _network(version: int, bits: int):
    def build(draw_args):
        address, prefix = draw_args
        return str(ipaddress.ip_network((address, prefix), strict=False))

    return st.tuples(st.ip_addresses(v=version), st.integers(0, bits)).map(build)


schemathesis.openapi.format(
    "cidr",
    st.one_of(
        _network(4, 32),
        _network(6, 128),
        st.ip_addresses(v=4).map(str),
        st.ip_addresses(v=6).map(str),
    ),
)
