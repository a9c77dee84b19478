"""The resume journal: members saved as they finish, damaged chunks redrawn, settings checked."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from posterior_diffusion.io.journal import (
    JournalError,
    SampleJournal,
    journal_path,
    remove_journal,
)

FIELD = (1, 4, 5)
SETTINGS = {"sampler": "guided", "steps": 48, "seed": 1, "prior": {"checksum": "abc"}}


def test_members_round_trip_and_a_new_journal_has_none(tmp_path):
    journal, resumed = SampleJournal.start(tmp_path / "out.h5", SETTINGS, resume=False)
    assert not resumed and journal.path == journal_path(tmp_path / "out.h5")
    assert journal.completed(6, FIELD) == {}
    draws = np.random.default_rng(0).normal(size=(2, *FIELD))
    journal.record([1, 4], draws, 6)
    journal.release()  # the run ends (a killed one releases it anyway)
    again, resumed = SampleJournal.start(tmp_path / "out.h5", SETTINGS, resume=True)
    found = again.completed(6, FIELD)
    assert resumed and sorted(found) == [1, 4]
    assert np.array_equal(found[4], draws[1])
    remove_journal(tmp_path / "out.h5")
    assert not journal.path.exists()


def test_a_member_cut_short_by_a_kill_is_drawn_again(tmp_path):
    journal, _ = SampleJournal.start(tmp_path / "out.zarr", SETTINGS, resume=False)
    journal.record([0, 1, 2], np.ones((3, *FIELD)), 3)
    chunk = journal.path / "samples.zarr" / "1.0.0.0"
    chunk.write_bytes(chunk.read_bytes()[:7])  # what a kill during the write could leave
    journal.release()
    again, _ = SampleJournal.start(tmp_path / "out.zarr", SETTINGS, resume=True)
    assert sorted(again.completed(3, FIELD)) == [0, 2]


def test_a_resumed_run_may_ask_for_more_members(tmp_path):
    journal, _ = SampleJournal.start(tmp_path / "out.h5", SETTINGS, resume=False)
    journal.record([0, 1], np.zeros((2, *FIELD)), 2)
    journal.release()
    again, _ = SampleJournal.start(tmp_path / "out.h5", SETTINGS, resume=True)
    assert sorted(again.completed(5, FIELD)) == [0, 1]
    again.record([4], np.zeros((1, *FIELD)), 5)
    assert sorted(again.completed(5, FIELD)) == [0, 1, 4]
    # Fewer members than were saved: only those asked for count.
    assert sorted(again.completed(1, FIELD)) == [0]


def test_existing_journals_need_resume_and_the_same_settings(tmp_path):
    SampleJournal.start(tmp_path / "out.h5", SETTINGS, resume=False)[0].release()
    with pytest.raises(JournalError, match="add --resume"):
        SampleJournal.start(tmp_path / "out.h5", SETTINGS, resume=False)
    with pytest.raises(JournalError, match=r"other settings \(seed, steps differ\)"):
        SampleJournal.start(tmp_path / "out.h5", {**SETTINGS, "seed": 2, "steps": 10}, True)
    (journal_path(tmp_path / "out.h5") / "run.json").write_text("{not json")
    with pytest.raises(JournalError, match="cannot read run.json"):
        SampleJournal.start(tmp_path / "out.h5", SETTINGS, resume=True)


def test_a_journal_for_other_map_shapes_is_refused(tmp_path):
    journal, _ = SampleJournal.start(tmp_path / "out.h5", SETTINGS, resume=False)
    journal.record([0], np.zeros((1, *FIELD)), 2)
    journal.release()
    again, _ = SampleJournal.start(tmp_path / "out.h5", SETTINGS, resume=True)
    with pytest.raises(JournalError, match=r"its samples are \(1, 4, 5\)"):
        again.completed(2, (1, 8, 8))


def test_a_live_run_s_journal_is_locked_and_a_dead_one_s_is_not(tmp_path):
    """A second run on the output of a live one is told so (with or without --resume), not
    asked to resume; once the first process is gone (here: released), it may resume. A second
    process is the real case: the lock is the kernel's, held per open file."""
    output = tmp_path / "out.h5"
    live, _ = SampleJournal.start(output, SETTINGS, resume=False)
    for resume in (False, True):
        with pytest.raises(JournalError, match="another run is writing out.h5 now"):
            SampleJournal.start(output, SETTINGS, resume=resume)
    script = (
        "import sys; from posterior_diffusion.io.journal import SampleJournal, JournalError\n"
        "try:\n"
        f"    SampleJournal.start({str(output)!r}, {SETTINGS!r}, resume=True)\n"
        "except JournalError as err:\n"
        "    print(err); sys.exit(3)\n"
    )
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert other.returncode == 3 and "another run is writing" in other.stdout
    live.release()
    with pytest.raises(JournalError, match="add --resume"):
        SampleJournal.start(output, SETTINGS, resume=False)
    resumed, was_resumed = SampleJournal.start(output, SETTINGS, resume=True)
    assert was_resumed
    resumed.release()
    journal_path(tmp_path / "x.h5").write_text("not a journal")
    with pytest.raises(JournalError, match="is not a journal directory"):
        SampleJournal.start(tmp_path / "x.h5", SETTINGS, resume=True)


def test_a_journal_folder_without_settings_or_members_is_taken_over(tmp_path):
    """A run that died between creating the folder and writing its settings (or a run that lost
    the lock race to this one) left an empty journal: a new run starts there without --resume."""
    output = tmp_path / "out.h5"
    journal_path(output).mkdir()
    journal, resumed = SampleJournal.start(output, SETTINGS, resume=False)
    assert not resumed and (journal.path / "run.json").exists()
    journal.release()


def test_the_journal_reports_a_changed_batch_size(tmp_path):
    journal, _ = SampleJournal.start(tmp_path / "out.h5", SETTINGS, resume=False)
    assert journal.batch_size_change(8) is None  # a new run
    journal.release()
    again, _ = SampleJournal.start(tmp_path / "out.h5", SETTINGS, resume=True)
    assert again.batch_size_change(8) is None  # same size: bit-identical members
    assert again.batch_size_change(4) == 8
    assert again.batch_size_change(4) is None
    again.release()
