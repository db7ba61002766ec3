"""memory_size: the MiB rules every memory/swap option follows."""

from __future__ import annotations

import pytest

from ansible_collections.enva.pve.plugins.module_utils.memory_size import format_like, parse_mib


@pytest.mark.parametrize("value, mib", [
    (2048, 2048),
    (0, 0),
    ("2048", 2048),
    (" 512 ", 512),
    ("2048M", 2048),
    ("2G", 2048),
    ("2g", 2048),
    ("2GB", 2048),
    ("2GiB", 2048),
    ("2gib", 2048),
    ("1.5G", 1536),
    ("1T", 1048576),
    ("1024K", 1),
    ("1048576KiB", 1024),
    ("0.5G", 512),
])
def test_sizes_in_mib(value, mib):
    assert parse_mib(value) == mib


@pytest.mark.parametrize("value, message", [
    (True, "True is a boolean, not a size"),
    (-1, "-1 is negative"),
    (1024.0, "1024.0 (float) is not a size"),
    (None, "None (NoneType) is not a size"),
    ("lots", "'lots' is not a size"),
    ("2 G B", "'2 G B' is not a size"),
    ("1536K", "'1536K' is not a whole number of MiB (1.5 MiB)"),
    ("0.3M", "'0.3M' is not a whole number of MiB (0.3 MiB)"),
    ("2P", "'2P' is not a size"),
    ("-2G", "'-2G' is not a size"),
    ("1e3", "'1e3' is not a size"),
])
def test_what_is_not_a_size(value, message):
    with pytest.raises(ValueError) as caught:
        parse_mib(value)
    assert str(caught.value).startswith(message)
    assert "2048, '2048M', '2G'" in str(caught.value) or "whole number" in str(caught.value)


@pytest.mark.parametrize("mib, example, text", [
    (2048, "1G", "2G"),
    (1536, "1G", "1536M"),
    (1536, "1g", "1536m"),
    (2048, "1024", "2048"),
    (2048, "1gib", "2gib"),
    (3072, "1GB", "3GB"),
    (1536, "1GiB", "1536MiB"),
    (2048, "1024M", "2048M"),
    (1, "4K", "1024K"),
    (1048576, "1T", "1T"),
    (2048, "not a size", "2048"),
])
def test_format_like_keeps_the_unit_when_whole(mib, example, text):
    assert format_like(mib, example) == text
    assert parse_mib(text) == mib
