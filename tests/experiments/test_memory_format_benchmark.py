import pytest

from experiments.benchmarks import memory_format


def test_benchmark_times_both_layouts_of_the_same_function(monkeypatch, capsys):
    monkeypatch.setitem(memory_format.CASES, "tiny_vgg", (8, (3, 32, 32)))
    [row] = memory_format.main(["--models", "tiny_vgg", "--repeats", "1", "--threads", "1"])
    assert row["contiguous ms"] > 0 and row["channels_last ms"] > 0
    assert row["ratio"] == pytest.approx(row["contiguous ms"] / row["channels_last ms"])
    assert float(row["logit diff"]) < 1e-5  # the same weights: rounding apart
    assert "channels_last ms" in capsys.readouterr().out


def test_an_unknown_model_is_refused_in_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        memory_format.main(["--models", "tiny_vgg,no_such_model"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "no_such_model" in err and len(err.splitlines()) == 1
