from crawler.spiders.frontier import Frontier


def test_outlets_take_turns_and_each_keeps_its_order():
    frontier = Frontier()
    for n in range(5):
        frontier.add("big", f"big/{n}")
    frontier.add("small", "small/0")
    assert frontier.take(3) == ["big/0", "small/0", "big/1"]
    assert len(frontier) == 3
    assert frontier.take(10) == ["big/2", "big/3", "big/4"]
    assert not frontier and frontier.take(5) == []


def test_taking_nothing_takes_nothing():
    frontier = Frontier()
    frontier.add("a", "a/0")
    assert frontier.take(0) == [] and frontier.take(-3) == [] and len(frontier) == 1
