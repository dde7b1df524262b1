"""Formats of Strata's OpenAPI document that the fuzzer cannot know by name.

`cidr` (acl entries): an IPv4 or IPv6 network in CIDR notation with the host
bits zero, or one address. The document's description says so; this teaches
the generator to produce such values.
"""

import ipaddress

import hypothesis.internal.lambda_sources as lambda_sources
from hypothesis import strategies as st

import schemathesis

# CPython 3.11 before 3.11.8 can raise "SystemError: AST constructor
# recursion depth mismatch" from ast.parse when called deep in a stack
# (CPython gh-106905). Hypothesis parses source only to *describe* a lambda
# in a strategy's repr; a plain description changes nothing else.
_describe = lambda_sources.lambda_description


def _lambda_description(f):
    try:
        return _describe(f)
    except SystemError:
        return "lambda"


lambda_sources.lambda_description = _lambda_description


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
