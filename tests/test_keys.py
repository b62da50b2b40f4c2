"""The key codec."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sriblob import Integrity
from sriblob.keys import KEY_PREFIX, integrity_to_key, key_to_integrity


class TestKeys:
    def test_layout_matches_the_original_system(self) -> None:
        """Keys are the prefix plus lowercase hex of the UTF-8 string."""
        text = "sha512-AbC+/def=="

        assert KEY_PREFIX == "script-packages/blobs/"
        assert integrity_to_key(text) == KEY_PREFIX + text.encode().hex()
        assert integrity_to_key(text) == (
            "script-packages/blobs/7368613531322d4162432b2f6465663d3d"
        )

    def test_integrity_objects_use_the_canonical_string(self) -> None:
        """An Integrity is keyed by its canonical form."""
        integrity = Integrity.from_bytes(b"x")

        assert integrity_to_key(integrity) == integrity_to_key(str(integrity))

    def test_custom_prefix(self) -> None:
        """The prefix is configurable both ways."""
        key = integrity_to_key("sha256-x", prefix="p/")

        assert key == "p/" + b"sha256-x".hex()
        assert key_to_integrity(key, prefix="p/") == "sha256-x"
        assert key_to_integrity(key) is None

    def test_foreign_keys_decode_to_none(self) -> None:
        """Keys outside the layout are not blobs."""
        for key in [
            "other/thing",
            KEY_PREFIX,
            KEY_PREFIX + "abc",
            KEY_PREFIX + "zz",
            KEY_PREFIX + "AB",
            KEY_PREFIX + "ab cd",
            KEY_PREFIX + ".staging/1234",
            KEY_PREFIX + "ff",
            "script-packages/blob/" + b"x".hex(),
        ]:
            assert key_to_integrity(key) is None, key

    @given(st.text(), st.text(alphabet="abc/-_.", max_size=10))
    def test_round_trip(self, text: str, prefix: str) -> None:
        """Any string round-trips through the codec under any prefix."""
        if not text:
            assert (
                key_to_integrity(integrity_to_key(text, prefix=prefix), prefix=prefix)
                is None
            )
            return
        key = integrity_to_key(text, prefix=prefix)

        assert key_to_integrity(key, prefix=prefix) == text
        assert key[len(prefix) :] == key[len(prefix) :].lower()

    @given(st.text())
    def test_decoding_never_raises(self, key: str) -> None:
        """Arbitrary keys decode to a string or None, never an exception."""
        result = key_to_integrity(key)

        assert result is None or integrity_to_key(result) == key
