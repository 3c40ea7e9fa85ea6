"""Forged decision records are NOT VERIFIED with the difference named; chains name a removed,
inserted, reordered or rewritten record; signatures say who signed and catch another key.

Every check goes through the CLI (`allocator verify`), as an auditor would run it. The genuine
records come from `allocator run` on the corpus's small valid round.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from allocator.cli import app
from tests.hostile.corpus import base
from tests.hostile.forgeries import Forgery, forge, forgeries, rehash, sha

FORGERIES = forgeries()
runner = CliRunner()


def cli(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Records folder with two genuine decision records of round T1 (a chain of two)."""
    folder = tmp_path_factory.mktemp("genuine")
    base()(folder / "round.xlsx")
    for _ in range(2):
        result = cli("run", folder / "round.xlsx", "--report", folder / "report.xlsx",
                     "--records", folder / "records", "--quiet")
        assert result.exit_code == 0, result.output
    return folder / "records"


def dirs(round_dir: Path) -> list[Path]:
    return sorted(p for p in round_dir.iterdir() if p.is_dir())


def records_of(records: Path) -> list[Path]:
    return dirs(records / "T1")


def test_genuine_records_verify_and_chain(genuine: Path) -> None:
    first, second = records_of(genuine)
    result = cli("verify", first)
    assert result.exit_code == 0, result.output
    assert f"VERIFIED {first}" in result.output
    assert "note: unsigned" in result.output
    manifest = json.loads((second / "manifest.json").read_text())
    assert manifest["kind"] == "decision"
    assert manifest["previous"] == sha(first / "manifest.json")
    assert json.loads((first / "manifest.json").read_text())["previous"] is None
    result = cli("verify", "--chain", genuine / "T1")
    assert result.exit_code == 0, result.output
    assert "first record of the round" in result.output
    assert f"follows {first.name}" in result.output
    assert "CHAIN VERIFIED" in result.output


@pytest.mark.parametrize("forgery", FORGERIES, ids=lambda f: f.name)
def test_forgery_is_not_verified_and_named(forgery: Forgery, genuine: Path, tmp_path: Path) -> None:
    record = records_of(genuine)[0]
    forged = forge(record, tmp_path / "T1" / record.name, forgery)
    result = cli("verify", forged)
    assert result.exit_code == 5, result.output
    assert f"NOT VERIFIED {forged}" in result.output
    assert forgery.says.lower() in result.output.lower(), result.output
    assert "Traceback" not in result.output


def test_at_least_twenty_forgeries() -> None:
    assert len(FORGERIES) >= 20


def test_forged_status_is_caught_even_with_every_digest_rewritten(genuine: Path, tmp_path: Path) -> None:
    """The issue's case: the manifest's digests all match again, so only meaning can tell."""
    record = records_of(genuine)[0]
    forgery = next(f for f in FORGERIES if f.name == "status_optimal_to_time_limit")
    forged = forge(record, tmp_path / "T1" / record.name, forgery)
    manifest = json.loads((forged / "manifest.json").read_text())
    assert all(sha(forged / n) == d for n, d in manifest["files"].items())  # bytes all agree
    result = cli("verify", forged)
    assert result.exit_code == 5
    assert "SHA-256" not in result.output  # not caught by the bytes


# --- chains -----------------------------------------------------------------------------------
def chain_of_three(genuine: Path, tmp_path: Path) -> Path:
    """A round folder with three chained records (the two genuine ones and one more run)."""
    records = tmp_path / "records"
    shutil.copytree(genuine, records)
    base()(tmp_path / "round.xlsx")
    result = cli("run", tmp_path / "round.xlsx", "--report", tmp_path / "r.xlsx", "--records", records, "-q")
    assert result.exit_code == 0, result.output
    assert len(records_of(records)) == 3
    return records / "T1"


def test_chain_names_a_removed_record(genuine: Path, tmp_path: Path) -> None:
    round_dir = chain_of_three(genuine, tmp_path)
    _a, b, c = dirs(round_dir)
    shutil.rmtree(b)
    result = cli("verify", "--chain", round_dir)
    assert result.exit_code == 5, result.output
    assert f"{c.name}: chains to record {b.name}" in result.output
    assert "which is not here: it was removed" in result.output


def test_chain_names_a_removed_first_record(genuine: Path, tmp_path: Path) -> None:
    round_dir = chain_of_three(genuine, tmp_path)
    shutil.rmtree(dirs(round_dir)[0])
    result = cli("verify", "--chain", round_dir)
    assert result.exit_code == 5
    assert "the round's earlier record(s) were removed" in result.output


def test_chain_names_an_inserted_record(genuine: Path, tmp_path: Path) -> None:
    """A forger makes a record that follows b, under a name that sorts between b and c."""
    round_dir = chain_of_three(genuine, tmp_path)
    _a, b, c = dirs(round_dir)
    inserted = round_dir / (b.name + "-x")  # sorts right after b
    assert b.name < inserted.name < c.name
    shutil.copytree(c, inserted)  # c follows b: so does the copy
    forgery = next(f for f in FORGERIES if f.name == "allocation_amount_raised")
    forgery.edit(inserted)
    rehash(inserted, output=True)
    result = cli("verify", "--chain", round_dir)
    assert result.exit_code == 5, result.output
    assert f"{c.name}: chains to {b.name}, skipping {inserted.name}: inserted into the chain" in result.output
    assert f"{inserted.name}: claims the same previous record as {c.name}, and no later record " \
           "chains to it: inserted" in result.output


def test_chain_names_an_exact_copy(genuine: Path, tmp_path: Path) -> None:
    round_dir = chain_of_three(genuine, tmp_path)
    _a, b, _c = dirs(round_dir)
    shutil.copytree(b, round_dir / (b.name + "-copy"))
    result = cli("verify", "--chain", round_dir)
    assert result.exit_code == 5, result.output
    assert f"{b.name}-copy: an exact copy of {b.name}" in result.output


def test_chain_names_a_reordered_record(genuine: Path, tmp_path: Path) -> None:
    round_dir = chain_of_three(genuine, tmp_path)
    _a, b, _c = dirs(round_dir)
    b.rename(round_dir / ("0" + b.name))  # now sorts first
    result = cli("verify", "--chain", round_dir)
    assert result.exit_code == 5, result.output
    assert "out of order" in result.output


def test_chain_names_a_rewritten_record(genuine: Path, tmp_path: Path) -> None:
    """The middle record rewritten consistently (its files match its manifest again)."""
    round_dir = chain_of_three(genuine, tmp_path)
    _a, b, c = dirs(round_dir)
    forge_in_place = next(f for f in FORGERIES if f.name == "allocation_amount_raised")
    forge_in_place.edit(b)
    rehash(b, output=True)
    result = cli("verify", "--chain", round_dir)
    assert result.exit_code == 5, result.output
    assert f"{c.name}: chains to {b.name} with digest" in result.output
    assert f"{b.name} was rewritten" in result.output
    # without --resolve the rewritten record's own files agree; --resolve re-solves and names it
    result = cli("verify", "--chain", "--resolve", round_dir)
    assert "allocation P1/A1/JIF/2026: recorded 49,000.00" in result.output


def test_chain_names_a_changed_file_inside_a_record(genuine: Path, tmp_path: Path) -> None:
    round_dir = chain_of_three(genuine, tmp_path)
    a = dirs(round_dir)[0]
    (a / "allocation.csv").write_text("program_id,region_id,fund_id,period,amount\n")
    result = cli("verify", "--chain", round_dir)
    assert result.exit_code == 5
    assert f"{a.name}: allocation.csv: its SHA-256 differs from the manifest" in result.output


def test_chain_over_a_records_folder_and_older_format_start(genuine: Path, tmp_path: Path) -> None:
    """A records folder holding rounds; the committed older-format record starts its chain."""
    records = tmp_path / "records"
    shutil.copytree(genuine, records)
    models = Path(__file__).resolve().parents[2] / "models"
    shutil.copytree(models, records, dirs_exist_ok=True)
    result = cli("verify", "--chain", records)
    assert result.exit_code == 0, result.output
    assert "older-format record without previous, accepted as the chain's start" in result.output
    assert result.output.count("CHAIN VERIFIED") == 2


def test_chain_accepts_a_settlement_record(genuine: Path, tmp_path: Path) -> None:
    """Another kind of record (a settlement) chains with the same `previous`."""
    records = tmp_path / "records"
    shutil.copytree(genuine, records)
    round_dir = records / "T1"
    last = records_of(records)[-1]
    settlement = round_dir / "29991231T000000000000Z-settle"
    settlement.mkdir()
    (settlement / "payments.csv").write_text("fund_id,amount\nJIF,1\n")
    manifest = {"kind": "settlement", "round_id": "T1", "run_id": settlement.name,
                "settles": {"run_id": last.name, "record_digest": sha(last / "manifest.json")},
                "previous": sha(last / "manifest.json"),
                "files": {"payments.csv": sha(settlement / "payments.csv")}}
    (settlement / "manifest.json").write_text(json.dumps(manifest))
    result = cli("verify", "--chain", round_dir)
    assert result.exit_code == 0, result.output
    assert "[settlement]" in result.output and f"settles {last.name}" in result.output
    (settlement / "manifest.json").write_text(json.dumps({**manifest, "settles": {"run_id": last.name,
                                                                          "record_digest": "0" * 64}}))
    result = cli("verify", "--chain", round_dir)
    assert result.exit_code == 5
    assert "settles record 0000000000000000..., which is not in this round" in result.output


def test_chain_of_an_empty_folder_is_a_usage_problem(tmp_path: Path) -> None:
    result = cli("verify", "--chain", tmp_path)
    assert result.exit_code == 1
    assert "holds no records" in result.stderr


# --- signatures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    for name in ("Upper Rhine JIF", "Someone Else"):
        result = cli("keys", "init", "--name", name, "--out", folder)
        assert result.exit_code == 0, result.output
    return folder


def test_keys_init_private_key_is_private_and_never_overwritten(keys: Path) -> None:
    private = keys / "Upper-Rhine-JIF.key"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("Signer: Upper Rhine JIF\n-----BEGIN PRIVATE KEY-----")
    before = private.read_bytes()
    result = cli("keys", "init", "--name", "Upper Rhine JIF", "--out", keys)
    assert result.exit_code == 2
    assert "already exists" in result.stderr
    assert private.read_bytes() == before


def signed_run(keys: Path, tmp_path: Path, *extra: str, env: dict[str, str] | None = None) -> Path:
    base()(tmp_path / "round.xlsx")
    result = cli("run", tmp_path / "round.xlsx", "--report", tmp_path / "r.xlsx", "--records",
                 tmp_path / "records", "-q", *extra, env=env)
    assert result.exit_code == 0, result.output
    return records_of(tmp_path / "records")[-1]


def test_signed_record_says_who_signed_and_when(keys: Path, tmp_path: Path) -> None:
    record = signed_run(keys, tmp_path, "--sign-key", str(keys / "Upper-Rhine-JIF.key"))
    signature = json.loads((record / "signature.json").read_text())
    assert "signature.json" not in json.loads((record / "manifest.json").read_text())["files"]
    result = cli("verify", record, "--public-key", keys / "Upper-Rhine-JIF.pub")
    assert result.exit_code == 0, result.output
    assert f"signed by Upper Rhine JIF (key {signature['key_fingerprint']}" in result.output
    assert f"at {signature['signed_utc']}: signature valid" in result.output
    # a folder of trusted keys works too
    result = cli("verify", record, "--public-key", keys)
    assert result.exit_code == 0 and "signature valid" in result.output
    # no trusted key given: a warning, still VERIFIED (the signature was not checked)
    result = cli("verify", record)
    assert result.exit_code == 0
    assert "no trusted public key was given" in result.output


def test_private_key_is_never_written_into_a_record(keys: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from allocator.signing import load_private

    record = signed_run(keys, tmp_path, "--sign-key", str(keys / "Upper-Rhine-JIF.key"))
    key = load_private(keys / "Upper-Rhine-JIF.key").private
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    pem_body = (keys / "Upper-Rhine-JIF.key").read_text().splitlines()[2]
    import base64

    for path in [*record.rglob("*"), tmp_path / "r.xlsx"]:
        if path.is_file():
            data = path.read_bytes()
            assert raw not in data and pem_body.encode() not in data, path
            assert base64.b64encode(raw) not in data and raw.hex().encode() not in data, path


def test_signing_key_from_the_environment(keys: Path, tmp_path: Path) -> None:
    record = signed_run(keys, tmp_path, env={"ALLOCATOR_SIGNING_KEY": str(keys / "Upper-Rhine-JIF.key")})
    assert (record / "signature.json").is_file()
    assert cli("verify", record, "--public-key", keys / "Upper-Rhine-JIF.pub").exit_code == 0


def test_unsigned_record_with_a_trusted_key_is_not_verified(genuine: Path, keys: Path) -> None:
    record = records_of(genuine)[0]
    result = cli("verify", record, "--public-key", keys / "Upper-Rhine-JIF.pub")
    assert result.exit_code == 5
    assert "unsigned: the record has no signature.json, but trusted keys were given" in result.output


def test_signature_from_another_key(keys: Path, tmp_path: Path) -> None:
    record = signed_run(keys, tmp_path, "--sign-key", str(keys / "Someone-Else.key"))
    result = cli("verify", record, "--public-key", keys / "Upper-Rhine-JIF.pub")
    assert result.exit_code == 5
    assert "which is none of the trusted keys" in result.output
    assert "claimed signer 'Someone Else'" in result.output


def test_signature_from_another_key_claiming_the_trusted_fingerprint(keys: Path, tmp_path: Path) -> None:
    from allocator.signing import load_private

    record = signed_run(keys, tmp_path, "--sign-key", str(keys / "Someone-Else.key"))
    doc = json.loads((record / "signature.json").read_text())
    doc["key_fingerprint"] = load_private(keys / "Upper-Rhine-JIF.key").fingerprint
    doc["signer"] = "Upper Rhine JIF"
    (record / "signature.json").write_text(json.dumps(doc))
    result = cli("verify", record, "--public-key", keys / "Upper-Rhine-JIF.pub")
    assert result.exit_code == 5
    assert "the signature does not verify with the trusted key" in result.output


def test_signature_over_an_older_manifest(keys: Path, tmp_path: Path) -> None:
    """Forger changes a file and rewrites the manifest; the old signature stays beside it."""
    record = signed_run(keys, tmp_path, "--sign-key", str(keys / "Upper-Rhine-JIF.key"))
    forgery = next(f for f in FORGERIES if f.name == "allocation_amount_raised")
    forgery.edit(record)
    rehash(record, output=True)
    result = cli("verify", record, "--public-key", keys / "Upper-Rhine-JIF.pub")
    assert result.exit_code == 5
    assert "signature.json signs another manifest.json" in result.output
    assert "the signature does not verify" in result.output


def test_signature_time_is_signed(keys: Path, tmp_path: Path) -> None:
    record = signed_run(keys, tmp_path, "--sign-key", str(keys / "Upper-Rhine-JIF.key"))
    doc = json.loads((record / "signature.json").read_text())
    doc["signed_utc"] = "2020-01-01T00:00:00Z"
    (record / "signature.json").write_text(json.dumps(doc))
    result = cli("verify", record, "--public-key", keys / "Upper-Rhine-JIF.pub")
    assert result.exit_code == 5
    assert "the signature does not verify" in result.output


def test_sign_record_signs_any_kind_of_record(keys: Path, tmp_path: Path) -> None:
    from allocator.record import check_files
    from allocator.signing import load_trusted, sign_record

    folder = tmp_path / "T1" / "settlement"
    folder.mkdir(parents=True)
    (folder / "payments.csv").write_text("x\n")
    (folder / "manifest.json").write_text(json.dumps(
        {"kind": "settlement", "round_id": "T1", "run_id": "settlement",
         "files": {"payments.csv": sha(folder / "payments.csv")}}))
    sign_record(folder, keys / "Upper-Rhine-JIF.key")
    out = check_files(folder, trusted_keys=load_trusted([keys / "Upper-Rhine-JIF.pub"]))
    assert out.verified, out.problems
    assert any("signed by Upper Rhine JIF" in n for n in out.notes)


def test_bad_signing_key_writes_nothing(tmp_path: Path) -> None:
    base()(tmp_path / "round.xlsx")
    (tmp_path / "not-a-key.key").write_text("hello")
    (tmp_path / "not-a-key.key").chmod(0o600)
    result = cli("run", tmp_path / "round.xlsx", "--report", tmp_path / "r.xlsx", "--records",
                 tmp_path / "records", "--sign-key", tmp_path / "not-a-key.key")
    assert result.exit_code == 2
    assert "not an unencrypted PEM private key" in result.stderr
    assert not (tmp_path / "records").exists() and not (tmp_path / "r.xlsx").exists()


def test_a_private_key_others_may_read_is_refused(keys: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared.key"
    shutil.copyfile(keys / "Upper-Rhine-JIF.key", shared)
    shared.chmod(0o644)
    base()(tmp_path / "round.xlsx")
    result = cli("run", tmp_path / "round.xlsx", "--report", tmp_path / "r.xlsx", "--records",
                 tmp_path / "records", "--sign-key", shared)
    assert result.exit_code == 2
    assert "others may read it (mode 644)" in result.stderr
    assert not (tmp_path / "records").exists() and not (tmp_path / "r.xlsx").exists()


def test_bad_trusted_key_is_a_usage_error(genuine: Path, tmp_path: Path) -> None:
    (tmp_path / "x.pub").write_text("nope")
    result = cli("verify", records_of(genuine)[0], "--public-key", tmp_path / "x.pub")
    assert result.exit_code == 2
    assert "not a PEM public key" in result.stderr


def test_keys_init_name_is_checked(tmp_path: Path) -> None:
    result = cli("keys", "init", "--name", "   ", "--out", tmp_path)
    assert result.exit_code == 2 and "must not be blank" in result.stderr
    result = cli("keys", "init", "--name", "../../etc/x", "--out", tmp_path)
    assert result.exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["etc-x.key", "etc-x.pub"]
    assert os.listdir(tmp_path.parent).count("etc") == 0


def test_a_new_record_chains_after_the_committed_older_format_one(tmp_path: Path) -> None:
    """models/ holds a record written before chaining; the next run of that round chains to it."""
    models = Path(__file__).resolve().parents[2] / "models"
    example = Path(__file__).resolve().parents[2] / "inputs" / "example_round.xlsx"
    records = tmp_path / "models"
    # only the committed record: running the README's example first adds newer ones beside it
    committed = dirs(models / "upper-rhine-2026")[0]
    shutil.copytree(committed, records / "upper-rhine-2026" / committed.name)
    (old,) = dirs(records / "upper-rhine-2026")
    result = cli("run", example, "--report", tmp_path / "r.xlsx", "--records", records, "-q")
    assert result.exit_code == 0, result.output
    new = dirs(records / "upper-rhine-2026")[-1]
    manifest = json.loads((new / "manifest.json").read_text())
    assert manifest["previous"] == sha(old / "manifest.json") and manifest["previous_run"] == old.name
    result = cli("verify", "--chain", records / "upper-rhine-2026")
    assert result.exit_code == 0, result.output
    assert "older-format record without previous, accepted as the chain's start" in result.output
    assert f"follows {old.name}" in result.output


# --- record names sort in the order records were chained -----------------------------------------
class _Clock:
    """A stand-in for the `time` module whose clock reads from a list of nanosecond readings."""

    def __init__(self, readings: list[int]) -> None:
        import time as real

        self._real, self._readings = real, iter(readings)

    def time_ns(self) -> int:
        return next(self._readings)

    def time(self) -> float:
        return self.time_ns() / 1e9

    def gmtime(self, secs: float | None = None):
        return self._real.gmtime(self.time() if secs is None else secs)

    def __getattr__(self, name: str):
        return getattr(self._real, name)


def test_run_ids_sort_in_clock_order_across_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids made while the clock crosses a second sort in the order they were made (the chain is
    read in name order): seconds and microseconds come from one reading of the clock."""
    import allocator.manifest as manifest

    start = 1_800_000_000 * 10**9 + 999_997_500  # 2.5 µs before a whole second
    monkeypatch.setattr(manifest, "time", _Clock([start + 1_000 * i for i in range(20)]))
    ids = [manifest.new_run_id("ab" * 32) for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5, ids
    assert ids[0].startswith("20270115T080000999997Z-abababab"), ids[0]


def test_a_record_written_after_the_clock_went_back_still_chains_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock set an hour back between two runs: the second record is still named after the
    first (its id is taken under the round's lock, after the latest record), and the chain holds."""
    import time

    import allocator.manifest as manifest

    base()(tmp_path / "round.xlsx")
    run = ("run", tmp_path / "round.xlsx", "--report", tmp_path / "report.xlsx",
           "--records", tmp_path / "records", "--quiet")
    assert cli(*run).exit_code == 0
    back = time.time_ns() - 3600 * 10**9
    monkeypatch.setattr(manifest, "time", _Clock([back + 1_000 * i for i in range(1_000)]))
    result = cli(*run)
    assert result.exit_code == 0, result.output
    first, second = records_of(tmp_path / "records")
    assert json.loads((second / "manifest.json").read_text())["previous_run"] == first.name
    result = cli("verify", "--chain", tmp_path / "records" / "T1")
    assert result.exit_code == 0, result.output


# --- a record's place: its round folder, links, and what the chain reads -----------------------
def test_a_record_copied_into_another_round_folder_is_named(genuine: Path, tmp_path: Path) -> None:
    """An old decision replayed as the first decision of a new round: verify and the chain
    name the round folder the record does not belong to."""
    first = records_of(genuine)[0]
    replayed = tmp_path / "records" / "T2" / first.name
    shutil.copytree(first, replayed)
    said = "manifest.json: round_id 'T1', but the record lies in the round folder 'T2'"
    for args in (("verify", replayed), ("verify", "--chain", replayed.parent)):
        result = cli(*args)
        assert result.exit_code == 5, result.output
        assert said in result.output and "Traceback" not in result.output


def test_a_foreign_rounds_record_chained_in_is_named(genuine: Path, tmp_path: Path) -> None:
    """A record of another round, its previous rewritten to follow this round's latest."""
    round_dir = chain_of_three(genuine, tmp_path)
    last = dirs(round_dir)[-1]
    base(lambda sheets: sheets["Round"].update(round_id="OTHER"))(tmp_path / "other.xlsx")
    result = cli("run", tmp_path / "other.xlsx", "--report", tmp_path / "o.xlsx",
                 "--records", tmp_path / "other", "-q")
    assert result.exit_code == 0, result.output
    foreign = dirs(tmp_path / "other" / "OTHER")[0]
    moved = round_dir / ("2999" + foreign.name[4:])
    shutil.copytree(foreign, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest.update(previous=sha(last / "manifest.json"), previous_run=last.name, run_id=moved.name)
    (moved / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    result = cli("verify", "--chain", round_dir)
    assert result.exit_code == 5, result.output
    assert f"{moved.name}: manifest.json: round_id 'OTHER', but the record lies in the round " \
           "folder 'T1'" in result.output


def test_a_record_folder_that_is_a_link_is_refused(genuine: Path, tmp_path: Path) -> None:
    records = tmp_path / "records"
    shutil.copytree(genuine, records)
    last = records_of(records)[-1]
    outside = tmp_path / "outside" / last.name
    shutil.move(last, outside)
    os.symlink(outside, last)
    said = f"the record folder {last.name} is a symbolic link (to {outside})"
    for args in (("verify", last), ("verify", "--chain", records / "T1")):
        result = cli(*args)
        assert result.exit_code == 5, result.output
        assert said in result.output


@pytest.mark.parametrize("previous", [["list"], {"sha256": "x"}, 7], ids=["list", "object", "number"])
def test_chain_names_a_previous_that_is_not_a_digest(previous: object, genuine: Path,
                                                     tmp_path: Path) -> None:
    records = tmp_path / "records"
    shutil.copytree(genuine, records)
    last = records_of(records)[-1]
    manifest = json.loads((last / "manifest.json").read_text())
    if isinstance(previous, list):
        previous = [manifest["previous"]]
    (last / "manifest.json").write_text(json.dumps({**manifest, "previous": previous}))
    result = cli("verify", "--chain", records / "T1")
    assert result.exit_code == 5, result.output
    assert f"{last.name}: previous is a" in result.output
    assert "not a record's digest: the link is broken" in result.output
    assert "Traceback" not in result.output and "internal error" not in result.output


def test_chain_names_a_manifest_with_a_key_given_twice(genuine: Path, tmp_path: Path) -> None:
    from tests.hostile.forgeries import duplicate_manifest_key

    records = tmp_path / "records"
    shutil.copytree(genuine, records)
    duplicate_manifest_key(records_of(records)[-1])
    result = cli("verify", "--chain", records / "T1")
    assert result.exit_code == 5, result.output
    assert "manifest.json gives the key 'files' twice" in result.output


def test_chain_names_an_unlisted_fifo(genuine: Path, tmp_path: Path) -> None:
    records = tmp_path / "records"
    shutil.copytree(genuine, records)
    first = records_of(records)[0]
    os.mkfifo(first / "notes")
    result = cli("verify", "--chain", records / "T1")
    assert result.exit_code == 5, result.output
    assert f"{first.name}: notes: not listed in the manifest" in result.output


# --- the one-unit tolerance: only a tie another solver version could break otherwise ----------
def _committed_copy(tmp_path: Path) -> Path:
    """The committed older-format record (compared within one unit, whatever its versions)."""
    models = Path(__file__).resolve().parents[2] / "models"
    committed = dirs(models / "upper-rhine-2026")[0]
    copy = tmp_path / "models" / "upper-rhine-2026" / committed.name
    shutil.copytree(committed, copy)
    return copy


def _rule_keeping_move(record: Path, *, same_program: bool) -> tuple[str, str]:
    """One unit moved between two allocation rows of one fund and period, keeping every rule:
    rows of one program (the same outcome value), or of two programs of different value.
    Writes the moved allocation.csv and returns the two rows' keys."""
    import pandas as pd

    from allocator.checker import check_allocation
    from allocator.round import Round

    rnd = Round.model_validate_json((record / "round.json").read_text())
    value = {p.program_id: rnd.value_per_trainee(p) / p.round_cost_per_trainee for p in rnd.programs}
    unit = int(rnd.settings.rounding_unit)
    df = pd.read_csv(record / "allocation.csv", dtype={"period": str})
    for i, a in df.iterrows():
        for j, b in df.iterrows():
            if i == j or (a.fund_id, a.period) != (b.fund_id, b.period) or a.amount <= unit:
                continue
            if (a.program_id == b.program_id) != same_program or \
                    (not same_program and abs(value[a.program_id] - value[b.program_id]) < 1e-6):
                continue
            moved = df.copy()
            moved.loc[i, "amount"] -= unit
            moved.loc[j, "amount"] += unit
            if not check_allocation(rnd, moved.astype({"amount": float})):
                moved.to_csv(record / "allocation.csv", index=False, lineterminator="\n")
                rehash(record, output=True)
                return ("/".join(map(str, a.iloc[:4])), "/".join(map(str, b.iloc[:4])))
    raise AssertionError("no move keeps every rule")


def test_a_unit_moved_between_programs_of_different_value_is_not_a_tie(tmp_path: Path) -> None:
    """On an older-format record (one-unit tolerance), a move that keeps every rule and stays
    within a unit per line still makes the allocation worth less: NOT VERIFIED."""
    record = _committed_copy(tmp_path)
    _rule_keeping_move(record, same_program=False)
    result = cli("verify", record)
    assert result.exit_code == 5, result.output
    assert "money was moved between programs of different value" in result.output


def test_a_tie_moved_the_other_way_is_verified_with_each_line_named(tmp_path: Path) -> None:
    """A unit moved between two amounts of one program keeps the outcome value: as another
    solver version breaking a tie, it is accepted on an older-format record, but each moved
    line is a warning."""
    record = _committed_copy(tmp_path)
    a, b = _rule_keeping_move(record, same_program=True)
    result = cli("verify", record)
    assert result.exit_code == 0, result.output
    for key in (a, b):
        assert f"warning: allocation {key}: recorded" in result.output
    assert "(within one rounding unit, accepted because the versions differ)" in result.output
