import pytest

from cross_sell import loader, synthetic
from cross_sell.__main__ import main as cli


def _write_csv(path, frame):
    # Kaggle writes Region_Code and Policy_Sales_Channel as floats ("28.0"); do the same.
    out = frame.astype({"Region_Code": "float64", "Policy_Sales_Channel": "float64"})
    out.to_csv(path, index=False)
    return path


def test_good_csv_round_trips_through_mongo(tmp_path, mongo_db):
    frame = synthetic.generate(2_000, seed=11)
    typed = loader.read_csv(_write_csv(tmp_path / "good.csv", frame))
    assert typed.equals(frame)
    stats = loader.upsert(mongo_db.customers, typed, batch_size=500)
    assert (stats.rows, stats.inserted) == (2_000, 2_000)
    stored = mongo_db.customers.find_one({"id": 17}, {"_id": False})
    expected = frame.set_index("id").loc[17]
    assert stored["Age"] == expected["Age"] and stored["Vehicle_Age"] == expected["Vehicle_Age"]
    assert isinstance(stored["Region_Code"], int)


def test_loading_twice_is_idempotent_and_updates_changed_rows(mongo_db):
    frame = synthetic.generate(1_000, seed=12)
    loader.upsert(mongo_db.customers, frame)
    frame.loc[frame["id"] == 5, "Age"] = 77
    again = loader.upsert(mongo_db.customers, frame)
    assert mongo_db.customers.estimated_document_count() == 1_000
    assert again.inserted == 0
    assert mongo_db.customers.find_one({"_id": 5})["Age"] == 77


@pytest.mark.parametrize("mutate, expected", [
    (lambda lines: lines.__setitem__(4, lines[4].replace(",Male,", ",Robot,").replace(",Female,", ",Robot,")),
     "line 5, column Gender: not one of"),
    (lambda lines: lines.__setitem__(3, lines[3] + ",surplus"), "line 4"),
    (lambda lines: lines.__setitem__(0, lines[0].replace("Vintage", "Tenure")),
     "header, column Vintage: missing column"),
    (lambda lines: lines.__setitem__(7, lines[2]), "line 8, column id: duplicate id"),
])
def test_bad_csv_is_refused_with_line_and_nothing_is_loaded(tmp_path, mongo_db, capsys, monkeypatch, mutate,
                                                            expected):
    path = _write_csv(tmp_path / "bad.csv", synthetic.generate(50, seed=13))
    lines = path.read_text().splitlines()
    mutate(lines)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(loader.LoadError, match="refused|unreadable") as refused:
        loader.read_csv(str(path))
    assert expected in str(refused.value)

    monkeypatch.setenv("CROSS_SELL_MONGO_DATABASE", mongo_db.name)
    uri = f"mongodb://{mongo_db.client.address[0]}:{mongo_db.client.address[1]}"
    assert cli(["load", "--csv", str(path), "--mongo-uri", uri, "--quiet"]) == 2
    assert expected in capsys.readouterr().err
    assert mongo_db.customers.estimated_document_count() == 0


def test_wrong_type_is_named_with_its_line(tmp_path):
    path = _write_csv(tmp_path / "bad.csv", synthetic.generate(30, seed=14))
    lines = path.read_text().splitlines()
    fields = lines[10].split(",")
    fields[2] = "forty"  # Age
    lines[10] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(loader.LoadError) as refused:
        loader.read_csv(str(path))
    assert "line 11, column Age: expected a number, got 'forty'" in str(refused.value)


def test_real_kaggle_sample_loads(sample_csv):
    frame = loader.read_csv(str(sample_csv))
    assert len(frame) == 57_166
    assert frame["Response"].mean() == pytest.approx(0.1226, abs=0.002)
