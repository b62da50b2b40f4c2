"""Integrity parsing, hashing and verification."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sriblob import Integrity, IntegrityHasher, IntegrityMismatch, InvalidIntegrity

DATA = b"sriblob"
SHA512 = "sha512-" + base64.b64encode(hashlib.sha512(DATA).digest()).decode()
SHA384 = "sha384-" + base64.b64encode(hashlib.sha384(DATA).digest()).decode()
SHA256 = "sha256-" + base64.b64encode(hashlib.sha256(DATA).digest()).decode()


class TestParse:
    def test_canonical_round_trip(self) -> None:
        """A canonical string parses to itself."""
        integrity = Integrity.parse(SHA512)

        assert str(integrity) == SHA512
        assert integrity.algorithm == "sha512"
        assert integrity.digest == hashlib.sha512(DATA).digest()

    @pytest.mark.parametrize("text", [SHA256, SHA384, SHA512])
    def test_each_algorithm(self, text: str) -> None:
        """sha256, sha384 and sha512 are all accepted."""
        assert str(Integrity.parse(text)) == text

    def test_strongest_wins(self) -> None:
        """Of several hashes the strongest is used, whatever the order."""
        assert str(Integrity.parse(f"{SHA256} {SHA512}  {SHA384}")) == SHA512
        assert str(Integrity.parse(f"{SHA384}\t{SHA256}")) == SHA384

    def test_options_are_dropped(self) -> None:
        """?options are accepted and not part of the canonical form."""
        assert str(Integrity.parse(SHA512 + "?foo?bar")) == SHA512

    def test_surrounding_whitespace(self) -> None:
        """Leading and trailing whitespace is ignored."""
        assert str(Integrity.parse(f"  {SHA512}\n")) == SHA512

    def test_unknown_algorithms_are_ignored_beside_a_known_one(self) -> None:
        """Unsupported hashes next to a supported one are skipped, per SRI."""
        assert str(Integrity.parse(f"sha1-abc= {SHA256}")) == SHA256

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("", "empty"),
            ("   ", "empty"),
            ("sha512", "not '<algorithm>-<base64>'"),
            ("md5-abc", "no supported hash algorithm"),
            ("sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=", "no supported hash algorithm"),
            ("sha512-abc", "88 base64 characters"),
            ("sha512-" + "A" * 87 + "!", "not standard base64"),
            ("sha256-" + "A" * 43 + "=" + "=", "44 base64 characters"),
            ("sha256-" + "A" * 42 + "B=", "not canonical base64"),
            (SHA512[:-4] + "====", "not standard base64"),
            ("sha512-../../etc/passwd", "not standard base64"),
            ("sha512-\0" + "A" * 87, "not standard base64"),
            ("sha512-" + "Ä" * 88, "not standard base64"),
            (SHA512 + " sha256-zz", "sha256 digest"),
        ],
    )
    def test_malformed(self, text: str, reason: str) -> None:
        """Malformed input raises InvalidIntegrity saying what is wrong."""
        with pytest.raises(InvalidIntegrity, match="Invalid integrity") as excinfo:
            Integrity.parse(text)

        assert reason in str(excinfo.value)
        assert isinstance(excinfo.value, ValueError)

    @pytest.mark.parametrize(
        ("text", "reason"),
        [
            ("sha512-" + "eHh4" * 10 + "eHg=", "not 44"),
            ("sha512-" + "A" * 1_000_000, "1000007 characters"),
            ("sha\x00512-" + "A" * 86 + "==", "no supported hash algorithm"),
            ("sh\u00e4512-" + "A" * 86 + "==", "no supported hash algorithm"),
            ("\u200bsha512-" + "A" * 86 + "==", "no supported hash algorithm"),
            ("../sha512-" + "A" * 86 + "==", "no supported hash algorithm"),
            ("sha512-" + "A" * 86 + "==\n../x", "not '<algorithm>-<base64>'"),
            ("sha512-" + "A" * 86 + "==\x00", "not standard base64"),
        ],
    )
    def test_hostile_input_gets_a_one_line_message(
        self, text: str, reason: str
    ) -> None:
        """Hostile strings (NUL, non-ASCII, paths, 1 MB) get a short one-line error."""
        with pytest.raises(InvalidIntegrity) as excinfo:
            Integrity.parse(text)

        message = str(excinfo.value)
        assert reason in message
        assert "\n" not in message
        assert "\x00" not in message
        assert len(message) < 300

    def test_long_input_is_truncated_in_the_message(self) -> None:
        """A huge string is quoted truncated, with its length."""
        text = "x" * 1_000_000

        with pytest.raises(InvalidIntegrity) as excinfo:
            Integrity.parse(text)

        message = str(excinfo.value)
        assert len(message) < 300
        assert "1000000 characters" in message
        assert len(excinfo.value.text) <= 60

    def test_non_string(self) -> None:
        """A non-string is an InvalidIntegrity, not an AttributeError."""
        with pytest.raises(InvalidIntegrity, match="must be a str"):
            Integrity.parse(b"sha512-abc")  # type: ignore[arg-type]

    def test_parse_of_integrity_is_identity(self) -> None:
        """Parsing an Integrity returns it unchanged."""
        integrity = Integrity.parse(SHA512)

        assert Integrity.parse(integrity) is integrity  # type: ignore[arg-type]


class TestValue:
    def test_hashable_and_comparable(self) -> None:
        """Integrities are equal by value, hashable and ordered."""
        a = Integrity.parse(SHA512)
        b = Integrity.parse(SHA512 + "?opt")

        assert a == b
        assert len({a, b}) == 1
        assert (
            min([Integrity.parse(SHA512), Integrity.parse(SHA256)]).algorithm
            == "sha256"
        )

    def test_frozen(self) -> None:
        """Integrities are immutable."""
        integrity = Integrity.parse(SHA512)

        with pytest.raises(AttributeError):
            integrity.algorithm = "sha256"  # type: ignore[misc]

    def test_repr(self) -> None:
        """repr() shows the canonical string."""
        assert repr(Integrity.parse(SHA256)) == f"Integrity({SHA256!r})"


class TestHashing:
    def test_from_bytes(self) -> None:
        """from_bytes hashes with sha512 by default."""
        assert str(Integrity.from_bytes(DATA)) == SHA512
        assert str(Integrity.from_bytes(DATA, "sha256")) == SHA256

    def test_from_bytes_unknown_algorithm(self) -> None:
        """An unsupported algorithm is a ValueError naming the supported ones."""
        with pytest.raises(ValueError, match="'sha512'"):
            Integrity.from_bytes(DATA, "md5")  # type: ignore[arg-type]

    def test_incremental_hasher(self) -> None:
        """Hashing in pieces gives the same integrity and counts bytes."""
        hasher = IntegrityHasher()
        for piece in (b"sri", memoryview(b"bl"), bytearray(b"ob")):
            hasher.update(piece)

        assert str(hasher.integrity()) == SHA512
        assert hasher.size == len(DATA)
        assert hasher.algorithm == "sha512"
        hasher.verify(Integrity.parse(SHA512))

    def test_verify_mismatch(self) -> None:
        """verify() raises IntegrityMismatch carrying expected and actual."""
        hasher = Integrity.parse(SHA512).hasher()
        hasher.update(b"other")

        with pytest.raises(IntegrityMismatch) as excinfo:
            hasher.verify(Integrity.parse(SHA512))

        assert excinfo.value.expected == SHA512
        assert excinfo.value.actual == str(Integrity.from_bytes(b"other"))


class TestProperties:
    @given(st.binary(), st.sampled_from(["sha256", "sha384", "sha512"]))
    def test_round_trip(self, data: bytes, algorithm: str) -> None:
        """str() of any integrity parses back to an equal integrity."""
        integrity = Integrity.from_bytes(data, algorithm)  # type: ignore[arg-type]

        assert Integrity.parse(str(integrity)) == integrity

    @given(st.text())
    def test_parse_never_raises_anything_else(self, text: str) -> None:
        """Arbitrary text parses or raises InvalidIntegrity, nothing else."""
        try:
            integrity = Integrity.parse(text)
        except InvalidIntegrity:
            return
        assert Integrity.parse(str(integrity)) == integrity

    @given(
        st.lists(
            st.sampled_from([SHA256, SHA384, SHA512, "sha1-x", "md5-y"]), min_size=1
        )
    )
    def test_strongest_of_any_mix(self, tokens: list[str]) -> None:
        """Any mix of hashes yields the strongest supported one."""
        supported = [t for t in tokens if t.startswith(("sha2", "sha3", "sha5"))]
        if not supported:
            with pytest.raises(InvalidIntegrity):
                Integrity.parse(" ".join(tokens))
            return
        best = max(supported, key=lambda t: int(t[3:6]))
        assert str(Integrity.parse(" ".join(tokens))) == best


def sri(data: bytes, algorithm: str = "sha512") -> str:
    """Return the SRI string of *data*, computed with hashlib (not sriblob)."""
    digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm}-{base64.b64encode(digest).decode()}"


class TestSeveralDigests:
    """Any digest of the strongest algorithm may match, as SRI and ssri say."""

    def test_parse_all_keeps_every_strongest_digest(self) -> None:
        """parse_all() returns the strongest algorithm's digests, in order."""
        first, second = sri(b"one"), sri(b"two")
        text = f"{sri(b'x', 'sha256')} {first} {sri(b'y', 'sha384')} {second}"

        assert [str(i) for i in Integrity.parse_all(text)] == [first, second]
        assert str(Integrity.parse(text)) == first

    def test_duplicates_are_listed_once(self) -> None:
        """The same digest twice is one candidate."""
        text = f"{sri(b'one')} {sri(b'one')}?opt"

        assert [str(i) for i in Integrity.parse_all(text)] == [sri(b"one")]

    def test_a_weaker_algorithm_never_counts(self) -> None:
        """sha256 digests are ignored once a sha512 one is present."""
        text = f"{sri(b'one', 'sha256')} {sri(b'two')}"

        assert [str(i) for i in Integrity.parse_all(text)] == [sri(b"two")]


class TestWhitespace:
    """Tokens are separated by ASCII whitespace only, as SRI splits them."""

    @pytest.mark.parametrize("separator", [" ", "\t", "\n", "\f", "\r", " \t\r\n "])
    def test_ascii_whitespace_separates(self, separator: str) -> None:
        """Space, tab, LF, FF and CR separate hashes, alone or in runs."""
        text = f"{separator}{sri(b'a')}{separator}{sri(b'b')}{separator}"

        assert [str(i) for i in Integrity.parse_all(text)] == [sri(b"a"), sri(b"b")]

    @pytest.mark.parametrize(
        "separator", ["\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u00a0", "\u2028", "\v"]
    )
    def test_other_whitespace_is_part_of_a_token(self, separator: str) -> None:
        """Python's other whitespace doesn't split: the token is malformed."""
        with pytest.raises(InvalidIntegrity):
            Integrity.parse(f"{sri(b'a')}{separator}{sri(b'b')}")

    @pytest.mark.parametrize("separator", ["\x1c", "\x85", "\v"])
    def test_other_whitespace_around_is_not_stripped(self, separator: str) -> None:
        """Leading or trailing non-ASCII whitespace makes the token invalid."""
        with pytest.raises(InvalidIntegrity):
            Integrity.parse(f"{separator}{sri(b'a')}")
