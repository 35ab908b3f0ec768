"""``thingsray bench``: the performance scenarios on a platform of its own, every figure beside its baseline."""
