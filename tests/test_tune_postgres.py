"""Optuna on a PostgreSQL storage URL (started by `.ci/postgres.sh start`; CI does that)."""

from __future__ import annotations

import os

import optuna
import pytest
from optuna.trial import TrialState

from tests.test_tune import search_spec, study_of

URL = os.environ.get("SWEEPER_TEST_POSTGRES_URL", "postgresql://sweeper:sweeper@127.0.0.1:5432/sweeper")


def postgres_reachable() -> str | None:
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(URL, connect_args={"connect_timeout": 3}).connect() as connection:
            connection.execute(sqlalchemy.text("select 1"))
        return None
    except Exception as exc:  # any driver or connection error means: no server here
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


@pytest.fixture
def postgres_url():
    problem = postgres_reachable()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"PostgreSQL at {URL} is unreachable under CI ({problem}); .ci/run starts it with .ci/postgres.sh"
            )
        pytest.skip(f"no PostgreSQL at {URL} ({problem}); start one with .ci/postgres.sh start")
    return URL


def test_study_on_postgres_url(tmp_path, cli, postgres_url):
    search_spec(tmp_path, name="pg", epochs=4, n_trials=4, workers=2, storage=postgres_url)
    cli("launch", "spec.yaml", "--executor", "local")
    ledger, study = study_of(tmp_path, "pg")
    assert ledger.meta["storage"] == postgres_url
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert not (ledger.dir / "optuna.journal").exists()  # nothing went to the journal file
    # the study lives in the database: a fresh connection sees it under the sweep's name
    names = [s.study_name for s in optuna.get_all_study_summaries(storage=postgres_url)]
    assert ledger.meta["study_name"] in names


def test_a_bare_postgresql_url_means_psycopg_3_whatever_sqlalchemys_version():
    from sweeper.study import engine_url

    assert engine_url("postgresql://u:p@h:5432/db") == "postgresql+psycopg://u:p@h:5432/db"
    assert engine_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert engine_url("postgresql+psycopg2://u@h/db") == "postgresql+psycopg2://u@h/db"  # chosen: kept
    assert engine_url("mysql://u@h/db") == "mysql://u@h/db"
