from suite.plotting import pyplot, save_figure


def test_save_figure_writes_a_png_and_leaves_no_temporary(tmp_path):
    fig, ax = pyplot().subplots()
    ax.plot([1, 2], [3, 4])
    out = save_figure(fig, tmp_path / "figs" / "f.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in out.parent.iterdir()] == ["f.png"]
    assert not pyplot().fignum_exists(fig.number)  # closed: a report draws many
