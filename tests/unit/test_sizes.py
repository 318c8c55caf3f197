from __future__ import annotations

import pytest

from devbox.sizes import MAX_SIZE, format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8g", 8 * 1024**3),
        ("8G", 8 * 1024**3),
        ("512m", 512 * 1024**2),
        ("512MiB", 512 * 1024**2),
        ("2GB", 2 * 1024**3),  # docker treats GB as GiB; so do we
        ("64k", 64 * 1024),
        ("1.5g", int(1.5 * 1024**3)),
        ("100b", 100),
        ("4096", 4096),
        (1024, 1024),
    ],
)
def test_docker_size_units_parse_to_bytes(text: str | int, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "8x", "g8", "-1g", "0", 0, True, None, [1], "8 gigs"])
def test_non_sizes_are_rejected(text: object) -> None:
    assert parse_size(text) is None


@pytest.mark.parametrize(("size", "text"), [(8 * 1024**3, "8g"), (1536 * 1024**2, "1536m"), (100, "100b")])
def test_format_size_is_the_shortest_exact_unit(size: int, text: str) -> None:
    assert format_size(size) == text
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["9" * 400, "9" * 5000 + "t", "99999999999999999999t", "8388608t", 2**63])
def test_sizes_past_what_docker_stores_never_raise(text: str | int) -> None:
    # float() made 400 digits inf and int(inf) raised OverflowError: "failed unexpectedly".
    size = parse_size(text)
    assert size is not None and size > MAX_SIZE


def test_sizes_are_exact_not_floats() -> None:
    assert parse_size("8388607t") == 8388607 * 1024**4 <= MAX_SIZE
    assert parse_size("1." + "0" * 5000 + "1k") == 1024
