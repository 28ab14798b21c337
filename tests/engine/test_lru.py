"""engine/lru.py: the bounded cache every long-lived cache uses."""
from engine.lru import LRU


def test_it_keeps_the_most_recently_used_entries():
    cache = LRU(2)
    cache["a"], cache["b"] = 1, 2
    assert cache.get("a") == 1  # a is now the most recent
    cache["c"] = 3
    assert "b" not in cache and cache["a"] == 1 and cache["c"] == 3 and len(cache) == 2


def test_a_hundred_thousand_keys_leave_only_its_size():
    cache = LRU(100)
    for i in range(100_000):
        cache.add(i)
    assert len(cache) == 100 and 99_999 in cache and 0 not in cache
