import pytest

from reproductions.layerskip.training.curriculum import (
    GradualCurriculum,
    NoCurriculum,
    RotationalCurriculum,
    make_curriculum,
)


def test_rotational_pattern_rotates_and_keeps_last():
    c = RotationalCurriculum(8, 3)
    seen = []
    for _ in range(6):
        seen.append(c.get())
        c.step()
    on = lambda m: [i for i, x in enumerate(m) if x]
    assert on(seen[0]) == [0, 3, 6, 7]
    assert on(seen[1]) == [1, 4, 7]
    assert on(seen[2]) == [2, 5, 7]
    assert seen[3] == seen[0]  # period R
    # every layer is enabled exactly once every R steps (the last layer always)
    for l in range(7):
        assert sum(m[l] for m in seen[:3]) == 1


def test_gradual_enables_from_last_to_first_over_first_half():
    L, T = 4, 80
    c = GradualCurriculum(L, T)
    masks = []
    for _ in range(T):
        masks.append(c.get())
        c.step()
    assert masks[0] == [False, False, False, True]
    # layer i on once t/T >= 0.5 (L-i)/L: layer 3 at t=10, 2 at 20, 1 at 30, 0 at 40
    first_on = [next(t for t, m in enumerate(masks) if m[i]) for i in range(L)]
    assert first_on == [40, 30, 20, 0]
    assert masks[39] == [False, True, True, True] and masks[40] == [True] * 4 and masks[-1] == [True] * 4
    counts = [sum(m) for m in masks]
    assert counts == sorted(counts)  # monotone: never switched off


@pytest.mark.parametrize("make", [lambda: RotationalCurriculum(6, 4), lambda: GradualCurriculum(6, 50),
                                  lambda: NoCurriculum(6)])
def test_resume_via_state_dict(make):
    a = make()
    for _ in range(17):
        a.step()
    b = make()
    b.load_state_dict(a.state_dict())
    for _ in range(10):
        assert a.get() == b.get()
        a.step()
        b.step()


def test_state_dict_mismatch_and_factory():
    with pytest.raises(ValueError):
        GradualCurriculum(6, 50).load_state_dict(GradualCurriculum(6, 60).state_dict())
    with pytest.raises(ValueError):
        RotationalCurriculum(6, 4).load_state_dict(GradualCurriculum(6, 50).state_dict())
    assert make_curriculum("last", 3).get() == [False, False, True]
    assert make_curriculum("rotational", 5, rotation=2).get() == [True, False, True, False, True]
    with pytest.raises(ValueError):
        make_curriculum("nope", 3)
