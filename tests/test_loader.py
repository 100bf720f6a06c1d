import pytest

from cross_sell.__main__ import main as cli
from cross_sell.data import loader, synthetic


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


def test_problems_are_reported_at_their_physical_line(tmp_path):
    """Blank lines and a quoted field spanning lines before a bad row do not shift its line number."""
    path = _write_csv(tmp_path / "shifted.csv", synthetic.generate(40, seed=15))
    lines = path.read_text().splitlines()
    lines.insert(3, "")  # physical line 4 is blank
    fields = lines[6].split(",")
    fields[1] = '"Male\nstill the same field"'  # a quoted value over two physical lines (7 and 8)
    lines[6] = ",".join(fields)
    bad = lines[20].split(",")
    bad[2] = "forty"
    lines[20] = ",".join(bad)  # physical line 22 (line 21 of the list, plus the field's extra line)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(loader.LoadError) as refused:
        loader.check_csv(str(path))
    message = str(refused.value)
    assert "line 7, column Gender: not one of" in message  # the multi-line value, where it starts
    assert "line 22, column Age: expected a number, got 'forty'" in message


def test_a_byte_that_is_not_utf8_is_refused_with_its_line(tmp_path):
    path = _write_csv(tmp_path / "latin1.csv", synthetic.generate(20, seed=16))
    raw = path.read_bytes().splitlines(keepends=True)
    raw[9] = raw[9].replace(b"Male", b"M\xe4le", 1).replace(b"Female", b"Fem\xe4le", 1)
    path.write_bytes(b"".join(raw))
    with pytest.raises(loader.LoadError, match=r"line 10, column \d+: byte 0xe4 is not UTF-8"):
        loader.check_csv(str(path))


def test_large_files_are_checked_and_loaded_chunk_by_chunk(tmp_path, mongo_db):
    frame = synthetic.generate(2_500, seed=17)
    path = _write_csv(tmp_path / "big.csv", frame)
    lines = path.read_text().splitlines()
    lines.append(lines[1])  # the first customer again, in the last chunk: a duplicate across chunks
    (tmp_path / "dup.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(loader.LoadError, match=f"line {len(lines)}, column id: duplicate id"):
        loader.check_csv(str(tmp_path / "dup.csv"), rows=1_000)
    stats = loader.load_csv(mongo_db.customers, str(path), rows=1_000, progress=False)
    assert (stats.rows, stats.inserted) == (2_500, 2_500)
    assert mongo_db.customers.estimated_document_count() == 2_500
    assert loader.read_csv(str(path)).equals(frame)


def test_what_is_loaded_is_exactly_what_was_checked(tmp_path, mongo_db, monkeypatch):
    """Issue #20: a CSV that changed between the check pass and the load pass had 40,000 rows written,
    and the error named "row=5000", not the line. The loader now checks and loads a private copy."""
    path = _write_csv(tmp_path / "moving.csv", synthetic.generate(3_000, seed=18))
    checked = loader.check_csv

    def then_the_file_changes(copy, *args, **kwargs):
        total = checked(copy, *args, **kwargs)
        lines = path.read_text().splitlines()
        bad = lines[2_000].split(",")
        bad[2] = "forty"
        lines[2_000] = ",".join(bad)
        path.write_text("\n".join(lines) + "\n")  # after the check, before the load
        return total

    monkeypatch.setattr(loader, "check_csv", then_the_file_changes)
    stats = loader.load_csv(mongo_db.customers, str(path), rows=1_000, progress=False)
    assert (stats.rows, stats.inserted) == (3_000, 3_000)  # the checked bytes, all of them, nothing else
    assert all(isinstance(d["Age"], int) for d in mongo_db.customers.find({}, {"Age": True}))
    # Reading the changed file without a private copy names the physical line, not a row of a chunk.
    monkeypatch.setattr(loader, "check_csv", checked)
    with pytest.raises(loader.LoadError, match="line 2001, column Age"):
        list(loader.read_csv_chunks(str(path), rows=1_000))


def test_progress_off_a_terminal_ends_at_100_percent(tmp_path, mongo_db, capsys):
    """Issue #21: off a terminal the progress lines stopped wherever the last 10-second tick was (75 %)."""
    path = _write_csv(tmp_path / "progress.csv", synthetic.generate(2_000, seed=19))
    loader.load_csv(mongo_db.customers, str(path), rows=500, progress=True)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == "upserting: 2,000 of 2,000 rows (100%)", lines
    assert any(line.startswith("checking: ") and line.endswith("(100%)") for line in lines), lines
