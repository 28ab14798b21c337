"""engine/sealed.py: a secret an action produced travels as a stand-in; only the reply that
leaves the process carries the value, and only while it lives."""
from engine import sealed


def test_a_stand_in_is_swapped_for_its_value_anywhere_in_a_reply():
    stand_in = sealed.seal("eyJ.tok.en", ttl=60, now=100.0, run_id="r1")
    assert stand_in.startswith(sealed.PREFIX) and "eyJ" not in stand_in
    reply = {"body": {"token": stand_in, "url": f"https://x/v?t={stand_in}&a=1", "n": 3, "list": [stand_in]}}
    assert sealed.unseal(reply, now=120.0, run_id="r1") == {"body": {"token": "eyJ.tok.en", "url": "https://x/v?t=eyJ.tok.en&a=1",
                                                        "n": 3, "list": ["eyJ.tok.en"]}}


def test_an_expired_or_unknown_stand_in_stays_a_stand_in():
    stand_in = sealed.seal("v", ttl=10, now=0.0, run_id="r1")
    forged = sealed.PREFIX + "0" * 32
    assert sealed.unseal([stand_in, forged], now=10.0, run_id="r1") == [stand_in, forged]


def test_no_value_lives_longer_than_an_hour():
    stand_in = sealed.seal("v", ttl=10 ** 9, now=0.0, run_id="r1")
    assert sealed.unseal(stand_in, now=sealed.MAX_TTL - 1, run_id="r1") == "v"
    assert sealed.unseal(stand_in, now=sealed.MAX_TTL, run_id="r1") == stand_in


def test_only_the_run_that_sealed_a_value_unseals_it():
    """A stand-in is visible (state database, flowrun show): another run whose Response echoes it
    back (a reply of triggerBody()) must send the stand-in, not the token."""
    stand_in = sealed.seal("the-token", ttl=60, now=0.0, run_id="minting-run")
    assert sealed.unseal({"echo": stand_in}, now=1.0, run_id="another-run") == {"echo": stand_in}
    assert sealed.unseal({"echo": stand_in}, now=1.0, run_id="minting-run") == {"echo": "the-token"}
